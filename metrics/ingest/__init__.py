"""Results people already have → the tables scalelens analyses: lm-evaluation-harness output folders, samples and
results files (both layouts), and plain tables. `pipeline.analyze_inputs` is the `scalelens analyze` command's
whole work; the other modules each read one kind of input or resolve one property (detect, lm_eval_samples,
lm_eval_results, tables, sizes, axes, directions). Nothing here imports torch."""

from metrics.ingest.errors import InputError
from metrics.ingest.pipeline import AnalyzeConfig, Inputs, analyze, analyze_inputs, read_inputs, write

__all__ = ["AnalyzeConfig", "InputError", "Inputs", "analyze", "analyze_inputs", "read_inputs", "write"]
