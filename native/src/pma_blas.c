/*
 * pma_blas: the smallest bridge from JavaScript Float32Arrays to OpenBLAS cblas_sgemm.
 *
 * Arguments arrive already validated by the TypeScript layer (src/nn/kernels/blas.ts);
 * the bounds are checked here again only so that a wrong call throws instead of letting
 * BLAS read or write outside the arrays.
 */
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>

/* Declared here rather than taken from cblas.h: distributions install that header under
 * different paths (and libblas-dev ships a conflicting one), while the OpenBLAS ABI for
 * these three functions is the same everywhere (LP64 ints, CBLAS enum values). */
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
char *openblas_get_config(void);

#define CHECK(call)                                                      \
  do {                                                                   \
    if ((call) != napi_ok) {                                             \
      napi_throw_error(env, NULL, "pma_blas: N-API call failed: " #call); \
      return NULL;                                                       \
    }                                                                    \
  } while (0)

typedef struct {
  float *data;
  int64_t length;
} F32;

static int get_f32(napi_env env, napi_value v, F32 *out) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value buf;
  size_t byte_offset;
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &buf, &byte_offset) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  /* data already points at element 0 of the view (byte_offset applied). */
  out->data = (float *)data;
  out->length = (int64_t)length;
  return 1;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

static int get_f64(napi_env env, napi_value v, double *out) {
  return napi_get_value_double(env, v, out) == napi_ok;
}

static int get_bool(napi_env env, napi_value v, bool *out) {
  return napi_get_value_bool(env, v, out) == napi_ok;
}

/* Last element touched by a rows x cols matrix with leading dimension ld, plus one. */
static int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return (rows - 1) * ld + cols;
}

typedef struct {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc, offA, offB, offC;
  int64_t batch, sA, sB, sC;
  double alpha, beta;
  F32 A, B, C;
} Gemm;

/* JS signature: (transA, transB, M, N, K, alpha, A, offA, lda, B, offB, ldb, beta, C, offC,
 * ldc[, batch, strideA, strideB, strideC]) */
static int parse(napi_env env, napi_callback_info info, Gemm *g, int batched) {
  napi_value argv[20];
  size_t argc = 20;
  size_t want = batched ? 20 : 16;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "pma_blas: wrong number of arguments");
    return 0;
  }
  int ok = get_bool(env, argv[0], &g->ta) && get_bool(env, argv[1], &g->tb) &&
           get_i64(env, argv[2], &g->M) && get_i64(env, argv[3], &g->N) &&
           get_i64(env, argv[4], &g->K) && get_f64(env, argv[5], &g->alpha) &&
           get_f32(env, argv[6], &g->A) && get_i64(env, argv[7], &g->offA) &&
           get_i64(env, argv[8], &g->lda) && get_f32(env, argv[9], &g->B) &&
           get_i64(env, argv[10], &g->offB) && get_i64(env, argv[11], &g->ldb) &&
           get_f64(env, argv[12], &g->beta) && get_f32(env, argv[13], &g->C) &&
           get_i64(env, argv[14], &g->offC) && get_i64(env, argv[15], &g->ldc);
  g->batch = 1;
  g->sA = g->sB = g->sC = 0;
  if (ok && batched) {
    ok = get_i64(env, argv[16], &g->batch) && get_i64(env, argv[17], &g->sA) &&
         get_i64(env, argv[18], &g->sB) && get_i64(env, argv[19], &g->sC);
  }
  if (!ok) {
    napi_throw_type_error(env, NULL, "pma_blas: expected (bool, bool, ints, number, Float32Array, ...)");
    return 0;
  }
  const int64_t lim = INT32_MAX;
  if (g->M < 0 || g->N < 0 || g->K < 0 || g->batch < 0 || g->M > lim || g->N > lim || g->K > lim ||
      g->offA < 0 || g->offB < 0 || g->offC < 0 || g->sA < 0 || g->sB < 0 || g->sC < 0 ||
      g->lda > lim || g->ldb > lim || g->ldc > lim) {
    napi_throw_range_error(env, NULL, "pma_blas: negative or oversized dimension");
    return 0;
  }
  int64_t aRows = g->ta ? g->K : g->M, aCols = g->ta ? g->M : g->K;
  int64_t bRows = g->tb ? g->N : g->K, bCols = g->tb ? g->K : g->N;
  int64_t minA = aCols > 1 ? aCols : 1, minB = bCols > 1 ? bCols : 1, minC = g->N > 1 ? g->N : 1;
  if (g->lda < minA || g->ldb < minB || g->ldc < minC) {
    napi_throw_range_error(env, NULL, "pma_blas: leading dimension smaller than the row length");
    return 0;
  }
  int64_t last = g->batch > 0 ? g->batch - 1 : 0;
  if (g->batch > 0 && g->M > 0 && g->N > 0 &&
      ((g->K > 0 && (g->offA + last * g->sA + extent(aRows, aCols, g->lda) > g->A.length ||
                     g->offB + last * g->sB + extent(bRows, bCols, g->ldb) > g->B.length)) ||
       g->offC + last * g->sC + extent(g->M, g->N, g->ldc) > g->C.length)) {
    napi_throw_range_error(env, NULL, "pma_blas: matrix extends past the end of its array");
    return 0;
  }
  return 1;
}

static void run_items(const Gemm *g, int64_t from, int64_t to) {
  for (int64_t b = from; b < to; b++) {
    cblas_sgemm(ROW_MAJOR, g->ta ? TRANS : NO_TRANS, g->tb ? TRANS : NO_TRANS, (int)g->M, (int)g->N,
                (int)g->K, (float)g->alpha, g->A.data + g->offA + b * g->sA, (int)g->lda,
                g->B.data + g->offB + b * g->sB, (int)g->ldb, (float)g->beta,
                g->C.data + g->offC + b * g->sC, (int)g->ldc);
  }
}

typedef struct {
  const Gemm *g;
  int64_t from, to;
} Slice;

static void *run_slice(void *p) {
  const Slice *s = (const Slice *)p;
  run_items(s->g, s->from, s->to);
  return NULL;
}

/* Attention-sized items (a few M multiply-adds) are too small for OpenBLAS to split
 * well across its threads; whole items per thread keep every core busy instead. */
#define SMALL_ITEM_MACS (1LL << 23)
#define MAX_SLICES 64

static void run(const Gemm *g) {
  if (g->M == 0 || g->N == 0 || g->batch == 0) return;
  int threads = openblas_get_num_threads();
  int64_t n = threads < g->batch ? threads : g->batch;
  if (n > MAX_SLICES) n = MAX_SLICES;
  /* Items may only run concurrently when their C blocks do not overlap. */
  int disjoint = g->sC >= extent(g->M, g->N, g->ldc);
  if (n < 2 || !disjoint || g->M * g->N * g->K > SMALL_ITEM_MACS) {
    run_items(g, 0, g->batch);
    return;
  }
  pthread_t tid[MAX_SLICES];
  Slice slice[MAX_SLICES];
  int started[MAX_SLICES] = {0};
  /* Each item then runs single-threaded inside OpenBLAS, in the thread that calls it. */
  openblas_set_num_threads(1);
  for (int64_t t = 0; t < n; t++) {
    slice[t].g = g;
    slice[t].from = g->batch * t / n;
    slice[t].to = g->batch * (t + 1) / n;
  }
  for (int64_t t = 1; t < n; t++) started[t] = pthread_create(&tid[t], NULL, run_slice, &slice[t]) == 0;
  run_slice(&slice[0]);
  for (int64_t t = 1; t < n; t++) {
    if (started[t]) pthread_join(tid[t], NULL);
    else run_slice(&slice[t]); /* no thread to be had: do its share here */
  }
  openblas_set_num_threads(threads);
}

static napi_value Sgemm(napi_env env, napi_callback_info info) {
  Gemm g;
  if (parse(env, info, &g, 0)) run(&g);
  return NULL;
}

static napi_value SgemmBatched(napi_env env, napi_callback_info info) {
  Gemm g;
  if (parse(env, info, &g, 1)) run(&g);
  return NULL;
}

static napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  int32_t n = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1) {
    napi_throw_range_error(env, NULL, "pma_blas: thread count must be a positive integer");
    return NULL;
  }
  openblas_set_num_threads(n);
  return NULL;
}

static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, threads, core, config;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_int32(env, openblas_get_num_threads(), &threads));
  CHECK(napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &core));
  CHECK(napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &config));
  CHECK(napi_set_named_property(env, obj, "threads", threads));
  CHECK(napi_set_named_property(env, obj, "core", core));
  CHECK(napi_set_named_property(env, obj, "config", config));
  return obj;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sgemm", NULL, Sgemm, NULL, NULL, NULL, napi_default, NULL},
      {"sgemmBatched", NULL, SgemmBatched, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, Info, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
