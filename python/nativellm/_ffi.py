"""ctypes declarations of every public symbol of include/nativellm.h.

This module only *describes* the C ABI; it never loads a library, so the declarations can be
checked against the header without a build (python/tests/test_abi.py does exactly that: the
function list, every argument and return type, the struct layouts and the #define values).

Keep it in header order. When the header gains a function, add one row to FUNCTIONS; when a
params struct gains a field, append it to the matching _fields_ (fields are only ever appended).
"""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Dict, List, Tuple

# The ABI these bindings were written against; _lib refuses a library reporting another.
ABI_VERSION = 1

# ---------------------------------------------------------------- #define constants

NLLM_ABI_VERSION = 1
NLLM_VERSION_STRING = "0.1.0"

NLLM_OK = 0
NLLM_ERR_INVALID_ARG = -1
NLLM_ERR_IO = -2
NLLM_ERR_FORMAT = -3
NLLM_ERR_UNSUPPORTED = -4
NLLM_ERR_NOMEM = -5
NLLM_ERR_CONTEXT_FULL = -6
NLLM_ERR_ABORTED = -7
NLLM_ERR_BUFFER_TOO_SMALL = -8
NLLM_ERR_NOT_FOUND = -9
NLLM_ERR_BACKEND = -10
NLLM_ERR_INTERNAL = -11
NLLM_ERR_BUSY = -12

NLLM_TYPE_F32 = 0
NLLM_TYPE_F16 = 1
NLLM_TYPE_Q4_0 = 2
NLLM_TYPE_Q4_1 = 3
NLLM_TYPE_Q5_0 = 6
NLLM_TYPE_Q5_1 = 7
NLLM_TYPE_Q8_0 = 8
NLLM_TYPE_Q8_1 = 9
NLLM_TYPE_Q2_K = 10
NLLM_TYPE_Q3_K = 11
NLLM_TYPE_Q4_K = 12
NLLM_TYPE_Q5_K = 13
NLLM_TYPE_Q6_K = 14
NLLM_TYPE_Q8_K = 15
NLLM_TYPE_IQ4_NL = 20
NLLM_TYPE_IQ4_XS = 23
NLLM_TYPE_BF16 = 30
NLLM_TYPE_TQ1_0 = 34
NLLM_TYPE_TQ2_0 = 35
NLLM_TYPE_MXFP4 = 39
NLLM_TYPE_IQ2_XXS = 16
NLLM_TYPE_IQ2_XS = 17
NLLM_TYPE_IQ3_XXS = 18
NLLM_TYPE_IQ1_S = 19
NLLM_TYPE_IQ3_S = 21
NLLM_TYPE_IQ2_S = 22
NLLM_TYPE_IQ1_M = 29
NLLM_TYPE_NONE = -1

NLLM_TOKEN_BOS = 0
NLLM_TOKEN_EOS = 1
NLLM_TOKEN_EOT = 2
NLLM_TOKEN_UNK = 3
NLLM_TOKEN_PAD = 4
NLLM_TOKEN_NEWLINE = 5

NLLM_LOG_ERROR = 0
NLLM_LOG_WARN = 1
NLLM_LOG_INFO = 2
NLLM_LOG_DEBUG = 3

NLLM_SEED_DEFAULT = 0xFFFFFFFFFFFFFFFF
NLLM_SEQ_MAX = 1024
NLLM_PARAMS_MAX_SIZE = 4096
NLLM_SEQ_ALL = -1

NLLM_FINISH_NONE = 0
NLLM_FINISH_EOG = 1
NLLM_FINISH_LENGTH = 2
NLLM_FINISH_STOP = 3
NLLM_FINISH_ABORTED = 4

NLLM_EMBEDDINGS_OFF = 0
NLLM_EMBEDDINGS_ONLY = 1
NLLM_EMBEDDINGS_WITH_LOGITS = 2
NLLM_POOLING_MODEL = -1
NLLM_POOLING_NONE = 0
NLLM_POOLING_MEAN = 1
NLLM_POOLING_CLS = 2
NLLM_POOLING_LAST = 3
NLLM_BF16_ACT_AUTO = -1
NLLM_BF16_ACT_EXACT = 0
NLLM_BF16_ACT_ROUND = 1

# ---------------------------------------------------------------- basic types

nllm_status = c_int32
nllm_token = c_int32


class nllm_model(Structure):
    """Opaque: only ever handled through a pointer."""


class nllm_context(Structure):
    """Opaque: only ever handled through a pointer."""


class nllm_sampler(Structure):
    """Opaque: only ever handled through a pointer."""


# Typed handle pointers rather than c_void_p, so ctypes refuses a context where a model belongs.
model_p = POINTER(nllm_model)
context_p = POINTER(nllm_context)
sampler_p = POINTER(nllm_sampler)


class nllm_gguf_writer(Structure):
    """Opaque: only ever handled through a pointer."""


gguf_writer_p = POINTER(nllm_gguf_writer)


class nllm_lora_adapter(Structure):
    """Opaque: only ever handled through a pointer."""


lora_adapter_p = POINTER(nllm_lora_adapter)

# ---------------------------------------------------------------- callbacks

nllm_log_fn = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)
nllm_progress_fn = CFUNCTYPE(c_int32, c_float, c_void_p)
nllm_abort_fn = CFUNCTYPE(c_int32, c_void_p)
# piece is not NUL-terminated, so it is a raw char pointer read with ctypes.string_at(piece, n).
nllm_token_fn = CFUNCTYPE(c_int32, nllm_token, POINTER(c_char), c_int32, c_void_p)

CALLBACK_TYPES = {
    "nllm_log_fn": nllm_log_fn,
    "nllm_progress_fn": nllm_progress_fn,
    "nllm_abort_fn": nllm_abort_fn,
    "nllm_token_fn": nllm_token_fn,
}

# ---------------------------------------------------------------- structs


class nllm_model_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("use_mmap", c_int32),
        ("n_ctx_default", c_int32),
        ("n_gpu_layers", c_int32),
        ("vocab_only", c_int32),
        ("quantize_type", c_int32),
        ("progress", nllm_progress_fn),
        ("progress_user_data", c_void_p),
        ("no_repack", c_int32),
    ]


class nllm_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


class nllm_context_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_int32),
        ("n_threads", c_int32),
        ("n_batch", c_int32),
        ("kv_type", c_int32),
        ("all_logits", c_int32),
        ("n_seq_max", c_int32),
        ("seed", c_uint64),
        ("abort_callback", nllm_abort_fn),
        ("abort_user_data", c_void_p),
        ("kv_type_v", c_int32),
        ("embeddings", c_int32),
        ("pooling", c_int32),
        ("normalize", c_int32),
        ("bf16_activations", c_int32),
    ]


class nllm_timings(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_prompt_tokens", c_int32),
        ("n_gen_tokens", c_int32),
        ("prompt_ms", c_double),
        ("gen_ms", c_double),
    ]


class nllm_batch(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tokens", c_int32),
        ("tokens", POINTER(nllm_token)),
        ("pos", POINTER(c_int32)),
        ("seq_id", POINTER(c_int32)),
        ("logits", POINTER(c_int32)),
    ]


class nllm_sampler_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_int32),
        ("seed", c_uint64),
        ("grammar", c_char_p),
        ("grammar_root", c_char_p),
        ("json_schema", c_char_p),
    ]


class nllm_chat_template_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("add_generation_prompt", c_int32),
        ("template_text", c_char_p),
        ("messages_json", c_char_p),
        ("tools_json", c_char_p),
        ("vars_json", c_char_p),
        ("max_output_bytes", c_int32),
        ("time_limit_ms", c_int32),
        ("now", c_int64),
    ]


class nllm_generate_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_tokens", c_int32),
        ("add_bos", c_int32),
        ("parse_special", c_int32),
        ("stop_at_eog", c_int32),
        ("on_token", nllm_token_fn),
        ("user_data", c_void_p),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_int32),
        ("finish_reason", POINTER(c_int32)),
    ]


class nllm_convert_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("type", c_int32),
        ("type_name", c_char_p),
        ("progress", nllm_progress_fn),
        ("progress_user_data", c_void_p),
        ("lora_paths", POINTER(c_char_p)),
        ("lora_scales", POINTER(c_float)),
        ("n_lora", c_int32),
    ]


class nllm_lora_adapter_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("weight_type", c_int32),
    ]


class nllm_convert_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_tensors", c_int32),
        ("bytes_in", c_uint64),
        ("bytes_out", c_uint64),
        ("seconds", c_double),
    ]


STRUCTS = {
    cls.__name__: cls
    for cls in (
        nllm_model_params,
        nllm_chat_message,
        nllm_chat_template_params,
        nllm_context_params,
        nllm_timings,
        nllm_batch,
        nllm_sampler_params,
        nllm_generate_params,
        nllm_convert_params,
        nllm_convert_stats,
        nllm_lora_adapter_params,
    )
}

# ---------------------------------------------------------------- functions

_i32p = POINTER(c_int32)
_tokp = POINTER(nllm_token)
_floatp = POINTER(c_float)

# name -> (restype, [argtypes]), in header order.
FUNCTIONS: Dict[str, Tuple[object, List[object]]] = {
    # library
    "nllm_version": (c_char_p, []),
    "nllm_abi_version": (c_int32, []),
    "nllm_last_error": (c_char_p, []),
    "nllm_status_name": (c_char_p, [nllm_status]),
    "nllm_system_info": (c_char_p, []),
    "nllm_set_log_callback": (None, [nllm_log_fn, c_void_p]),
    "nllm_set_log_level": (None, [c_int32]),
    "nllm_type_name": (c_char_p, [c_int32]),
    # model
    "nllm_model_params_init_sized": (nllm_status, [POINTER(nllm_model_params), c_size_t]),
    "nllm_model_params_init": (None, [POINTER(nllm_model_params)]),
    "nllm_model_load": (nllm_status, [c_char_p, POINTER(nllm_model_params), POINTER(model_p)]),
    "nllm_model_free": (None, [model_p]),
    "nllm_model_arch": (c_char_p, [model_p]),
    "nllm_model_name": (c_char_p, [model_p]),
    "nllm_model_n_params": (c_uint64, [model_p]),
    "nllm_model_size_bytes": (c_uint64, [model_p]),
    "nllm_model_n_vocab": (c_int32, [model_p]),
    "nllm_model_n_ctx_train": (c_int32, [model_p]),
    "nllm_model_n_embd": (c_int32, [model_p]),
    "nllm_model_n_layer": (c_int32, [model_p]),
    "nllm_model_token": (nllm_token, [model_p, c_int32]),
    "nllm_model_token_is_eog": (c_int32, [model_p, nllm_token]),
    "nllm_model_meta_str": (nllm_status, [model_p, c_char_p, POINTER(c_char_p)]),
    "nllm_model_meta_int": (nllm_status, [model_p, c_char_p, POINTER(c_int64)]),
    "nllm_model_meta_float": (nllm_status, [model_p, c_char_p, POINTER(c_double)]),
    "nllm_model_meta_count": (c_int32, [model_p]),
    "nllm_model_meta_key": (c_char_p, [model_p, c_int32]),
    "nllm_model_meta_value_text": (
        nllm_status,
        [model_p, c_int32, c_char_p, c_int32, _i32p],
    ),
    "nllm_model_tensor_count": (c_int32, [model_p]),
    "nllm_model_tensor_info": (
        nllm_status,
        [model_p, c_int32, POINTER(c_char_p), _i32p, _i32p, POINTER(c_int64)],
    ),
    # tokenizer
    "nllm_tokenize": (
        nllm_status,
        [model_p, c_char_p, c_int32, c_int32, c_int32, _tokp, c_int32, _i32p],
    ),
    "nllm_token_to_piece": (
        nllm_status,
        [model_p, nllm_token, c_int32, c_char_p, c_int32, _i32p],
    ),
    "nllm_detokenize": (
        nllm_status,
        [model_p, _tokp, c_int32, c_int32, c_char_p, c_int32, _i32p],
    ),
    # chat templates
    "nllm_chat_format": (
        nllm_status,
        [model_p, POINTER(nllm_chat_message), c_int32, c_int32, c_char_p, c_int32, _i32p],
    ),
    "nllm_chat_apply_template": (
        nllm_status,
        [c_char_p, POINTER(nllm_chat_message), c_int32, c_int32, c_char_p, c_int32, _i32p],
    ),
    # chat templates: Jinja and tool calls
    "nllm_chat_template_params_init_sized": (nllm_status, [POINTER(nllm_chat_template_params), c_size_t]),
    "nllm_chat_template_params_init": (None, [POINTER(nllm_chat_template_params)]),
    "nllm_chat_template_render": (
        nllm_status,
        [model_p, POINTER(nllm_chat_template_params), c_char_p, c_int32, _i32p],
    ),
    "nllm_tool_calls_parse": (nllm_status, [c_char_p, c_char_p, c_char_p, c_int32, _i32p]),
    # context
    "nllm_context_params_init_sized": (nllm_status, [POINTER(nllm_context_params), c_size_t]),
    "nllm_context_params_init": (None, [POINTER(nllm_context_params)]),
    "nllm_context_create": (
        nllm_status,
        [model_p, POINTER(nllm_context_params), POINTER(context_p)],
    ),
    "nllm_context_free": (None, [context_p]),
    "nllm_decode": (nllm_status, [context_p, _tokp, c_int32]),
    "nllm_get_logits": (_floatp, [context_p]),
    "nllm_get_logits_ith": (_floatp, [context_p, c_int32]),
    "nllm_context_pos": (c_int32, [context_p]),
    "nllm_context_n_ctx": (c_int32, [context_p]),
    "nllm_context_model": (model_p, [context_p]),
    "nllm_context_rewind": (nllm_status, [context_p, c_int32]),
    "nllm_context_reset": (None, [context_p]),
    "nllm_context_timings": (nllm_status, [context_p, POINTER(nllm_timings)]),
    # many sequences per context
    "nllm_batch_init_sized": (nllm_status, [POINTER(nllm_batch), c_size_t]),
    "nllm_batch_init": (None, [POINTER(nllm_batch)]),
    "nllm_decode_batch": (nllm_status, [context_p, POINTER(nllm_batch)]),
    "nllm_get_logits_seq": (_floatp, [context_p, c_int32]),
    "nllm_context_n_seq_max": (c_int32, [context_p]),
    "nllm_seq_remove": (nllm_status, [context_p, c_int32, c_int32, c_int32]),
    "nllm_seq_copy": (nllm_status, [context_p, c_int32, c_int32, c_int32, c_int32]),
    "nllm_seq_keep": (nllm_status, [context_p, c_int32]),
    "nllm_seq_shift": (nllm_status, [context_p, c_int32, c_int32, c_int32, c_int32]),
    "nllm_seq_pos_min": (c_int32, [context_p, c_int32]),
    "nllm_seq_pos_max": (c_int32, [context_p, c_int32]),
    "nllm_seq_n_tokens": (c_int32, [context_p, c_int32]),
    "nllm_context_kv_cells": (nllm_status, [context_p, _i32p, _i32p]),
    # embeddings
    "nllm_model_is_encoder": (c_int32, [model_p]),
    "nllm_model_pooling": (c_int32, [model_p]),
    "nllm_model_normalize": (c_int32, [model_p]),
    "nllm_context_pooling": (c_int32, [context_p]),
    "nllm_context_normalize": (c_int32, [context_p]),
    "nllm_get_embeddings_seq": (nllm_status, [context_p, c_int32, POINTER(_floatp)]),
    "nllm_get_embeddings_ith": (nllm_status, [context_p, c_int32, POINTER(_floatp)]),
    # saved state
    "nllm_state_size": (nllm_status, [context_p, c_int32, POINTER(c_uint64)]),
    "nllm_state_save": (
        nllm_status,
        [context_p, c_int32, c_void_p, c_uint64, POINTER(c_uint64)],
    ),
    "nllm_state_load": (nllm_status, [context_p, c_int32, c_void_p, c_uint64]),
    "nllm_state_save_file": (nllm_status, [context_p, c_int32, c_char_p]),
    "nllm_state_load_file": (nllm_status, [context_p, c_int32, c_char_p]),
    # sampling
    "nllm_sampler_params_init_sized": (nllm_status, [POINTER(nllm_sampler_params), c_size_t]),
    "nllm_sampler_params_init": (None, [POINTER(nllm_sampler_params)]),
    "nllm_sampler_create": (
        nllm_status,
        [model_p, POINTER(nllm_sampler_params), POINTER(sampler_p)],
    ),
    "nllm_sampler_free": (None, [sampler_p]),
    "nllm_sampler_reset": (None, [sampler_p, c_uint64]),
    "nllm_sampler_sample": (nllm_status, [sampler_p, context_p, _tokp]),
    "nllm_sampler_sample_logits": (nllm_status, [sampler_p, _floatp, c_int32, _tokp]),
    "nllm_sampler_accept": (None, [sampler_p, nllm_token]),
    # generation
    "nllm_generate_params_init_sized": (nllm_status, [POINTER(nllm_generate_params), c_size_t]),
    "nllm_generate_params_init": (None, [POINTER(nllm_generate_params)]),
    "nllm_generate": (
        nllm_status,
        [
            context_p,
            sampler_p,
            c_char_p,
            c_int32,
            POINTER(nllm_generate_params),
            _i32p,
        ],
    ),
    "nllm_generate_tokens": (
        nllm_status,
        [context_p, sampler_p, _tokp, c_int32, POINTER(nllm_generate_params), _i32p],
    ),
    # conversion and quantization
    "nllm_type_parse": (nllm_status, [c_char_p, _i32p, _i32p]),
    "nllm_type_names": (c_char_p, []),
    "nllm_convert_params_init_sized": (nllm_status, [POINTER(nllm_convert_params), c_size_t]),
    "nllm_convert_params_init": (None, [POINTER(nllm_convert_params)]),
    "nllm_convert": (
        nllm_status,
        [c_char_p, c_char_p, POINTER(nllm_convert_params), POINTER(nllm_convert_stats)],
    ),
    "nllm_quantize": (
        nllm_status,
        [c_char_p, c_char_p, POINTER(nllm_convert_params), POINTER(nllm_convert_stats)],
    ),
    # machine facts for tools
    "nllm_default_n_threads": (c_int32, []),
    "nllm_read_bandwidth_gbs": (c_double, [c_uint64, c_int32, c_int32]),
    "nllm_type_row_size": (c_uint64, [c_int32, c_int64]),
    # GGUF writer
    "nllm_gguf_writer_create": (nllm_status, [POINTER(gguf_writer_p)]),
    "nllm_gguf_writer_free": (None, [gguf_writer_p]),
    "nllm_gguf_set_str": (nllm_status, [gguf_writer_p, c_char_p, c_char_p]),
    "nllm_gguf_set_u32": (nllm_status, [gguf_writer_p, c_char_p, c_uint32]),
    "nllm_gguf_set_f32": (nllm_status, [gguf_writer_p, c_char_p, c_float]),
    "nllm_gguf_set_bool": (nllm_status, [gguf_writer_p, c_char_p, c_int32]),
    "nllm_gguf_set_str_array": (
        nllm_status,
        [gguf_writer_p, c_char_p, POINTER(c_char_p), c_uint64],
    ),
    "nllm_gguf_set_f32_array": (nllm_status, [gguf_writer_p, c_char_p, _floatp, c_uint64]),
    "nllm_gguf_set_i32_array": (nllm_status, [gguf_writer_p, c_char_p, _i32p, c_uint64]),
    "nllm_gguf_add_tensor": (
        nllm_status,
        [gguf_writer_p, c_char_p, c_int32, c_int32, POINTER(c_int64), c_void_p, c_uint64],
    ),
    "nllm_gguf_write": (nllm_status, [gguf_writer_p, c_char_p]),
    "nllm_quantize_row": (nllm_status, [c_int32, _floatp, c_void_p, c_int64]),
    # constrained output
    "nllm_json_schema_to_grammar": (nllm_status, [c_char_p, c_char_p, c_int32, _i32p]),
    "nllm_grammar_validate": (nllm_status, [c_char_p, c_char_p]),
    "nllm_sampler_grammar_complete": (c_int32, [sampler_p]),
    # LoRA adapters
    "nllm_lora_adapter_load": (nllm_status, [model_p, c_char_p, POINTER(lora_adapter_p)]),
    "nllm_lora_adapter_params_init_sized": (
        nllm_status,
        [POINTER(nllm_lora_adapter_params), c_size_t],
    ),
    "nllm_lora_adapter_load_params": (
        nllm_status,
        [model_p, c_char_p, POINTER(nllm_lora_adapter_params), POINTER(lora_adapter_p)],
    ),
    "nllm_lora_adapter_free": (None, [lora_adapter_p]),
    "nllm_lora_adapter_name": (c_char_p, [lora_adapter_p]),
    "nllm_lora_adapter_n_matrices": (c_int32, [lora_adapter_p]),
    "nllm_lora_adapter_rank": (c_int32, [lora_adapter_p]),
    "nllm_lora_adapter_alpha": (c_float, [lora_adapter_p]),
    "nllm_lora_adapter_weight_type": (c_int32, [lora_adapter_p]),
    "nllm_context_set_lora": (
        nllm_status,
        [context_p, POINTER(lora_adapter_p), _floatp, c_int32],
    ),
    "nllm_context_n_lora": (c_int32, [context_p]),
    "nllm_seq_set_lora": (
        nllm_status,
        [context_p, c_int32, POINTER(lora_adapter_p), _floatp, c_int32],
    ),
}


def bind(lib: ctypes.CDLL) -> List[str]:
    """Set restype/argtypes of every declared function on lib; return the names it lacks.

    Within one ABI version functions are only ever added, so a library older than these
    bindings may lack a newer function. The caller replaces those with stubs that raise, and
    everything else keeps working.
    """
    missing = []
    for name, (restype, argtypes) in FUNCTIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    return missing


__all__ = [n for n in dir() if n.startswith(("nllm_", "NLLM_"))] + [
    "ABI_VERSION",
    "FUNCTIONS",
    "STRUCTS",
    "CALLBACK_TYPES",
    "bind",
    "model_p",
    "context_p",
    "sampler_p",
    "gguf_writer_p",
    "lora_adapter_p",
]
