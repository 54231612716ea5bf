/* <ember/c.h>: Ember's C API, for C11 programs and for languages that call C (Python ctypes,
 * Rust, Go, ...). It reads checkpoints (tensors, hyperparameters) and runs the forward pass of a
 * model stored in a self-describing checkpoint, on the CPU or a CUDA device.
 *
 * Conventions:
 *  - Objects are opaque handles, created by ember_*_open/ember_*_load and released by
 *    ember_*_close/ember_*_free (which accept NULL).
 *  - Every function returns an ember_status; EMBER_OK is 0. After a failure,
 *    ember_last_error() gives a message naming the file, tensor or argument at fault. No C++
 *    exception ever crosses this API.
 *  - A handle may be used from one thread at a time; distinct handles from any threads.
 *  - Output strings and arrays described by a handle stay valid until the handle is released.
 *  - Tensors are dense and C-ordered (row-major); sizes are in bytes unless said otherwise.
 */
#ifndef EMBER_C_H
#define EMBER_C_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define EMBER_C_API
#else
#define EMBER_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The largest rank of an Ember tensor (the size of shape arrays below). */
#define EMBER_MAX_NDIM 8

typedef enum ember_status {
  EMBER_OK = 0,
  EMBER_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, an unknown device, an input of the wrong shape */
  EMBER_ERROR_NOT_FOUND = 2,        /* no tensor of that name, an index out of range */
  EMBER_ERROR_BUFFER_TOO_SMALL = 3, /* a caller's buffer is too small; the size needed is reported */
  EMBER_ERROR_OUT_OF_MEMORY = 4,
  EMBER_ERROR_FAILED = 5            /* anything else: unreadable or corrupt file, no CUDA device, ... */
} ember_status;

/* Element types, with the same numbers as ember::DType. */
typedef enum ember_dtype {
  EMBER_F32 = 0,
  EMBER_F64 = 1,
  EMBER_F16 = 2,
  EMBER_BF16 = 3,
  EMBER_I32 = 4,
  EMBER_I64 = 5,
  EMBER_U8 = 6,
  EMBER_BOOL = 7
} ember_dtype;

/* The message of the last failure on this thread ("" when none). Valid until the next call on
 * this thread. */
EMBER_C_API const char* ember_last_error(void);

/* The library's version. Any pointer may be NULL. */
EMBER_C_API ember_status ember_version(int* major, int* minor, int* patch);

/* The number of CPU threads Ember's kernels use (default: the number of cores). */
EMBER_C_API ember_status ember_set_num_threads(int threads);

/* --- Checkpoints ------------------------------------------------------------------------- */

typedef struct ember_checkpoint ember_checkpoint;

typedef struct ember_tensor_info {
  const char* name;     /* "section/dotted.name", e.g. "state_dict/encoder.0.weight" */
  ember_dtype dtype;
  int32_t ndim;
  const int64_t* shape; /* ndim sizes */
  size_t nbytes;        /* bytes of the dense tensor */
} ember_tensor_info;

/* Opens a checkpoint, validating its header and index (tensor data is read on demand). */
EMBER_C_API ember_status ember_checkpoint_open(const char* path, ember_checkpoint** out);
EMBER_C_API ember_status ember_checkpoint_close(ember_checkpoint* checkpoint);
/* How many tensors the file holds, over all sections. */
EMBER_C_API ember_status ember_checkpoint_tensor_count(const ember_checkpoint* checkpoint, size_t* count);
/* The index-th tensor's name, dtype and shape (index < count; sorted by section, then name). */
EMBER_C_API ember_status ember_checkpoint_tensor_info(const ember_checkpoint* checkpoint, size_t index,
                                                      ember_tensor_info* info);
/* Reads the tensor called name (as in ember_tensor_info) into buffer, checking its checksum;
 * buffer_bytes must be at least its nbytes. */
EMBER_C_API ember_status ember_checkpoint_read_tensor(const ember_checkpoint* checkpoint, const char* name,
                                                      void* buffer, size_t buffer_bytes);
/* The hyperparameters as JSON text ("{}" when the file has none), NUL-terminated. *length (if not
 * NULL) receives the text's length without the NUL; when buffer is NULL or buffer_size is not
 * more than that length, nothing is written and EMBER_ERROR_BUFFER_TOO_SMALL is returned. Values
 * JSON lacks are written as Python's json module does (NaN, Infinity) or as objects: bytes as
 * {"$bytes": "<hex>"}, tensors as {"$tensor": "<dtype>[<shape>]"}. */
EMBER_C_API ember_status ember_checkpoint_hparams_json(const ember_checkpoint* checkpoint, char* buffer,
                                                       size_t buffer_size, size_t* length);

/* --- Models ------------------------------------------------------------------------------ */

typedef struct ember_model ember_model;

/* Loads the model stored in a self-describing checkpoint (one that records its module tree:
 * written by ember::nn::save or the trainer) onto device: NULL or "cpu", "cuda" or "cuda:N".
 * The model is in evaluation mode. */
EMBER_C_API ember_status ember_model_load(const char* path, const char* device, ember_model** out);
EMBER_C_API ember_status ember_model_free(ember_model* model);
/* Runs the forward pass on an f32 input of input_ndim sizes input_shape (read from host
 * memory: input must hold the product of input_shape floats) and writes the f32 output to host
 * memory: output_capacity is the number of floats
 * output can hold. output_shape (EMBER_MAX_NDIM entries) and *output_ndim receive the output's
 * shape, also when EMBER_ERROR_BUFFER_TOO_SMALL says output is too small for it. */
EMBER_C_API ember_status ember_model_forward(ember_model* model, const float* input, const int64_t* input_shape,
                                             int32_t input_ndim, float* output, size_t output_capacity,
                                             int64_t* output_shape, int32_t* output_ndim);
/* The module tree as PyTorch prints it, NUL-terminated; buffer, buffer_size and length as in
 * ember_checkpoint_hparams_json. */
EMBER_C_API ember_status ember_model_describe(const ember_model* model, char* buffer, size_t buffer_size,
                                              size_t* length);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_C_H */
