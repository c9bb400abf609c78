"""Pure-numpy decoding: MaskGIT parallel decoding and autoregressive raster-order decoding.

No I/O and no torch: a scheduler calls the network, these turn logits into tokens."""
from .autoregressive import (UNKNOWN, ARState, ar_init, ar_input_ids, ar_next_positions,
                             ar_step)
from .factored import (assemble_ids, factor_slices, factored_argmax, sample_factored, split_ids,
                       token_log_prob)
from .maskgit import (DEFAULT_CHOICE_TEMPERATURE, DEFAULT_STEPS, MaskGITState, mask_schedule,
                      masked_after_step, maskgit_init, maskgit_step)
from .options import (SAMPLERS, SamplerOptions, SamplerSettings, TaskSamplerDefaults, default_method,
                      resolve_sampler)
from .sampling import Draw, guided_logits, log_softmax, sample_many, sample_rows, sample_with_log_prob, top_k_filter

__all__ = [
    "ARState", "UNKNOWN", "ar_init", "ar_input_ids", "ar_next_positions", "ar_step",
    "DEFAULT_CHOICE_TEMPERATURE", "DEFAULT_STEPS", "MaskGITState", "guided_logits", "mask_schedule",
    "masked_after_step", "maskgit_init", "maskgit_step",
    "SAMPLERS", "SamplerOptions", "SamplerSettings", "TaskSamplerDefaults", "default_method", "resolve_sampler",
    "Draw", "log_softmax", "sample_many", "sample_rows", "sample_with_log_prob", "top_k_filter",
    "assemble_ids", "factor_slices", "factored_argmax", "sample_factored", "split_ids", "token_log_prob",
]
