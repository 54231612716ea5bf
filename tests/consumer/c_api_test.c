/* The C API from a C11 program: version, a checkpoint's tensors and hyperparameters, a model's
 * forward pass, and the error paths. Reads what `consumer DIR` wrote: DIR/model.ckpt (a
 * self-describing checkpoint of a 4 -> 16 -> 2 MLP), DIR/probe_input.f32 (5 x 4) and
 * DIR/probe_output.f32 (the model's 5 x 2 output, computed by the C++ API).
 * Usage: c_api_test DIR */
#include <ember/c.h>
#include <ember/config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "c_api_test:%d: FAILED: %s\n", __LINE__, #cond);   \
      ++failures;                                                          \
    }                                                                      \
  } while (0)

/* Runs an API call that must succeed; stops the test with the library's message otherwise. */
#define OK(call)                                                                                 \
  do {                                                                                           \
    ember_status s_ = (call);                                                                    \
    if (s_ != EMBER_OK) {                                                                        \
      fprintf(stderr, "c_api_test:%d: %s returned %d: %s\n", __LINE__, #call, (int)s_, ember_last_error()); \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static size_t read_floats(const char* path, float* out, size_t n) {
  FILE* f = fopen(path, "rb");
  size_t got;
  if (f == NULL) {
    fprintf(stderr, "c_api_test: cannot open %s\n", path);
    exit(1);
  }
  got = fread(out, sizeof(float), n, f);
  fclose(f);
  return got;
}

int main(int argc, char** argv) {
  char path[4096];
  int major = -1, minor = -1, patch = -1;
  ember_checkpoint* ckpt = NULL;
  ember_model* model = NULL;
  size_t count = 0, i, len = 0;
  ember_tensor_info info;
  int found = 0;
  float weight[64], small[4];
  char* json;
  float input[20], expected[10], output[10];
  int64_t in_shape[2] = {5, 4}, bad_shape[2] = {5, 3}, out_shape[EMBER_MAX_NDIM];
  int32_t out_ndim = 0;
  double max_diff = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: c_api_test DIR\n");
    return 2;
  }

  OK(ember_version(&major, &minor, &patch));
  CHECK(major == EMBER_VERSION_MAJOR && minor == EMBER_VERSION_MINOR && patch == EMBER_VERSION_PATCH);
  CHECK(strcmp(ember_last_error(), "") == 0);

  /* A checkpoint's tensors. */
  snprintf(path, sizeof path, "%s/model.ckpt", argv[1]);
  OK(ember_checkpoint_open(path, &ckpt));
  OK(ember_checkpoint_tensor_count(ckpt, &count));
  CHECK(count == 4); /* 0.weight, 0.bias, 2.weight, 2.bias */
  for (i = 0; i < count; ++i) {
    OK(ember_checkpoint_tensor_info(ckpt, i, &info));
    if (strcmp(info.name, "state_dict/0.weight") == 0) {
      found = 1;
      CHECK(info.dtype == EMBER_F32);
      CHECK(info.ndim == 2 && info.shape[0] == 16 && info.shape[1] == 4);
      CHECK(info.nbytes == 16 * 4 * sizeof(float));
    }
  }
  CHECK(found);
  CHECK(ember_checkpoint_tensor_info(ckpt, count, &info) == EMBER_ERROR_NOT_FOUND);
  OK(ember_checkpoint_read_tensor(ckpt, "state_dict/0.weight", weight, sizeof weight));
  CHECK(isfinite(weight[0]) && weight[0] != 0.0f);
  CHECK(ember_checkpoint_read_tensor(ckpt, "state_dict/0.weight", small, sizeof small) == EMBER_ERROR_BUFFER_TOO_SMALL);
  CHECK(strstr(ember_last_error(), "256 bytes") != NULL);
  CHECK(ember_checkpoint_read_tensor(ckpt, "state_dict/nope", weight, sizeof weight) == EMBER_ERROR_NOT_FOUND);
  CHECK(strstr(ember_last_error(), "nope") != NULL);

  /* Hyperparameters as JSON: ask for the length, then read. */
  CHECK(ember_checkpoint_hparams_json(ckpt, NULL, 0, &len) == EMBER_ERROR_BUFFER_TOO_SMALL);
  CHECK(len > 0);
  json = (char*)malloc(len + 1);
  OK(ember_checkpoint_hparams_json(ckpt, json, len + 1, &len));
  CHECK(strlen(json) == len);
  CHECK(strstr(json, "\"hidden\": 16") != NULL);
  CHECK(strstr(json, "\"activation\": \"tanh\"") != NULL);
  CHECK(strstr(json, "\"lr\": 0.01") != NULL);
  free(json);
  OK(ember_checkpoint_close(ckpt));
  OK(ember_checkpoint_close(NULL));

  /* The model's forward pass matches the C++ API's output. */
  snprintf(path, sizeof path, "%s/probe_input.f32", argv[1]);
  CHECK(read_floats(path, input, 20) == 20);
  snprintf(path, sizeof path, "%s/probe_output.f32", argv[1]);
  CHECK(read_floats(path, expected, 10) == 10);
  snprintf(path, sizeof path, "%s/model.ckpt", argv[1]);
  OK(ember_model_load(path, "cpu", &model));
  OK(ember_model_forward(model, input, in_shape, 2, output, 10, out_shape, &out_ndim));
  CHECK(out_ndim == 2 && out_shape[0] == 5 && out_shape[1] == 2);
  for (i = 0; i < 10; ++i) {
    double d = fabs((double)output[i] - (double)expected[i]);
    if (d > max_diff) max_diff = d;
  }
  CHECK(max_diff <= 1e-6);
  /* Too small an output buffer: the shape is still reported. */
  out_ndim = 0;
  CHECK(ember_model_forward(model, input, in_shape, 2, output, 3, out_shape, &out_ndim) == EMBER_ERROR_BUFFER_TOO_SMALL);
  CHECK(out_ndim == 2 && out_shape[0] == 5 && out_shape[1] == 2);
  /* An input the model cannot take: the message gives the shape. */
  CHECK(ember_model_forward(model, input, bad_shape, 2, output, 10, out_shape, &out_ndim) == EMBER_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(ember_last_error(), "(5, 3)") != NULL);
  CHECK(ember_model_forward(model, NULL, in_shape, 2, output, 10, out_shape, &out_ndim) == EMBER_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(ember_last_error(), "input") != NULL);
  {
    char text[1024];
    OK(ember_model_describe(model, text, sizeof text, &len));
    CHECK(strstr(text, "Linear(in_features=4, out_features=16, bias=True)") != NULL);
  }
  OK(ember_model_free(model));

  /* Errors name what is wrong. */
  CHECK(ember_checkpoint_open("/nonexistent/dir/x.ckpt", &ckpt) == EMBER_ERROR_FAILED);
  CHECK(ckpt == NULL);
  CHECK(strstr(ember_last_error(), "/nonexistent/dir/x.ckpt") != NULL);
  CHECK(ember_model_load(path, "gpu", &model) == EMBER_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(ember_last_error(), "gpu") != NULL);
  CHECK(ember_checkpoint_open(NULL, &ckpt) == EMBER_ERROR_INVALID_ARGUMENT);
  CHECK(ember_set_num_threads(0) == EMBER_ERROR_INVALID_ARGUMENT);
  if (!EMBER_WITH_CUDA) {
    CHECK(ember_model_load(path, "cuda", &model) == EMBER_ERROR_FAILED);
    CHECK(model == NULL);
    CHECK(strlen(ember_last_error()) > 0);
  }

  if (failures == 0) printf("c_api_test: all checks passed (max |diff| %g)\n", max_diff);
  return failures == 0 ? 0 : 1;
}
