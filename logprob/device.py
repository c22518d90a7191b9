"""Device policy in one place: the token budget of a forward pass, the out-of-memory back-off, and where a model's
inputs and output head live. Scoring (`logprob.score`) and generation (`logprob.generate`) share all three.

**Budget.** `TokenBudget.resolve` gives the tokens one forward pass may hold: the `--token-budget` given, else
CPU_TOKEN_BUDGET on a CPU, else an estimate from free CUDA memory (`cuda_token_budget`). One `TokenBudget` serves
every scoring and generation call on one loaded model, so a budget halved while scoring the first task is where the
next task starts. Its `initial` value is written to the `token_budget` provenance column and to `run.json`.

**Back-off.** One rule for both: an out-of-memory error (`is_out_of_memory`: `torch.OutOfMemoryError`, which CUDA,
MPS and XPU raise, plus the allocation failures that torch reports as a plain RuntimeError) halves the budget and the
unfinished work is planned again; a pass that already held the smallest unit of work (one segment, one prompt)
cannot shrink, so it fails with `DeviceOutOfMemory`, one line naming the device and what to change. Results do not
depend on the budget beyond float tolerance (README, "How scores are computed").

**Placement.** A model loaded with `--device-map auto` has its layers on several devices (and, past `--max-memory`,
read from disk on each pass). accelerate's hooks move each layer's inputs to its device; `execution_device` says
where a module computes, so the scorer feeds inputs to the input embedding's device and applies the output head on
the head's device.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

#: Token budget of one forward pass on CPU: as fast as 4096 on a quiet 2-core machine with two threads, at well
#: under half the activation memory (measured, see `logprob/score.py`).
CPU_TOKEN_BUDGET = 2048
#: Bounds of the budget estimated from free CUDA memory.
MIN_CUDA_BUDGET, MAX_CUDA_BUDGET = 512, 1 << 17
#: Share of free CUDA memory the activations of one pass may take (the logits chunks and allocator slack need the rest).
FREE_MEMORY_SHARE = 4
#: Allocation failures torch raises as a plain RuntimeError rather than torch.OutOfMemoryError (cuBLAS workspace,
#: the CPU allocator); lm-eval's `find_executable_batch_size` treats the same messages as out of memory.
OOM_MESSAGES = ("CUBLAS_STATUS_ALLOC_FAILED", "DefaultCPUAllocator: can't allocate memory", "out of memory")


class DeviceOutOfMemory(OSError):
    """Out of memory on a pass that cannot shrink; one line naming the device and the remedies."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says a device ran out of memory.

    >>> is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    True
    >>> is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"))
    True
    >>> is_out_of_memory(RuntimeError("shape mismatch")), is_out_of_memory(ValueError("out of memory"))
    (False, False)
    """
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return type(exc) is RuntimeError and any(m in str(exc) for m in OOM_MESSAGES)


def halve(budget: int) -> int:
    """The back-off rule: half the budget, at least one token.

    >>> halve(2048), halve(3), halve(1)
    (1024, 1, 1)
    """
    return max(1, budget // 2)


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where `module` computes: its accelerate hook's execution device when dispatched (`--device-map auto`), else
    the device of its first parameter; CPU for a module without parameters or with weights offloaded to disk."""
    hook = getattr(module, "_hf_hook", None)
    where = getattr(hook, "execution_device", None)
    if where is not None:
        return torch.device("cuda", where) if isinstance(where, int) else torch.device(where)
    param = next(module.parameters(), None)
    if param is None or param.device.type == "meta":
        return torch.device("cpu")
    return param.device


def model_devices(model: torch.nn.Module, device: torch.device) -> list[torch.device]:
    """The devices a model's layers compute on: those of its `hf_device_map` (disk offload computes on the main
    device), else `device`."""
    placement = getattr(model, "hf_device_map", None) or {}
    found = []
    for where in placement.values():
        if where in ("disk", "meta"):
            where = device
        dev = torch.device("cuda", where) if isinstance(where, int) else torch.device(where)
        if dev not in found:
            found.append(dev)
    return found or [device]


def cuda_token_budget(config, dtype: torch.dtype, free_bytes: int) -> int:
    """A quarter of `free_bytes` over an estimate of activation bytes per token: about 16 hidden-size vectors, plus
    float32 attention scores and the mask over a row of 2 * ROW_TOKENS. A wrong guess only costs time: an
    out-of-memory error halves the budget and retries.

    >>> class C: hidden_size, num_attention_heads = 512, 8
    >>> cuda_token_budget(C(), torch.bfloat16, free_bytes=2 * 2**30)  # 16·512·2 + 8·512·4 + 512·2 = 33,792 B/token
    15887
    """
    from logprob.batching import ROW_TOKENS

    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 4096)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 32)
    elem = torch.finfo(dtype).bits // 8
    row = 2 * ROW_TOKENS
    per_token = 16 * hidden * elem + heads * row * 4 + row * elem
    return int(min(MAX_CUDA_BUDGET, max(MIN_CUDA_BUDGET, free_bytes // FREE_MEMORY_SHARE // per_token)))


class TokenBudget:
    """The token budget of one loaded model's forward passes, shared by its scoring and generation calls; mutable
    state (not a setting): `value` is halved by `back_off`, `initial` is what was resolved."""

    def __init__(self, value: int, source: str, device: torch.device | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"token_budget: expected a positive token count, got {value!r}")
        self.initial = self.value = value
        self.source = source  # "given", "cpu" or "free memory"
        self.device = device
        self.halvings = 0

    def __repr__(self) -> str:
        return f"TokenBudget({self.value}, initial={self.initial}, source={self.source!r})"

    @classmethod
    def resolve(cls, loaded, given: int | None) -> TokenBudget:
        """`given` (--token-budget) if set; else CPU_TOKEN_BUDGET when the model computes on the CPU; else from the
        least free memory among the CUDA devices holding the model."""
        if given is not None:
            return cls(given, "given", loaded.device)
        cuda = [d for d in model_devices(loaded.model, loaded.device) if d.type == "cuda"]
        if not cuda:
            return cls(CPU_TOKEN_BUDGET, "cpu", loaded.device)
        free = min(torch.cuda.mem_get_info(d)[0] for d in cuda)
        return cls(cuda_token_budget(loaded.model.config, loaded.dtype, free), "free memory", loaded.device)

    def back_off(self, exc: BaseException, *, smallest: bool, what: str, n_left: int) -> None:
        """Handle an exception raised by a pass: re-raise it unless it is out of memory; raise DeviceOutOfMemory if
        the pass held the smallest unit of work (`smallest`); else halve the budget, free the allocator's cache and
        log one warning line. The caller then plans its `n_left` unfinished `what` again under `self.value`."""
        if not is_out_of_memory(exc):
            raise exc
        where = self.device or "the device"
        if smallest:
            raise DeviceOutOfMemory(
                f"out of memory on {where} for a single {what.rstrip('s')} at token budget {self.value}; give the "
                "model more memory (--device-map auto with --max-memory, a smaller --dtype) or shorten the inputs "
                "(--max-length)") from None
        self.value = halve(self.value)
        self.halvings += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("out of memory on %s: retrying %d %s with token budget %d", where, n_left, what, self.value)
