/* The training container in C: narrowing at the max anchor and the Quantum width gradients.
 *
 * The training container Container.training(e, m) has base fp32, specials none and subnormals
 * off. Anchored at the tensor maximum, its window is anchor - (2^e - 2) .. anchor, where the
 * anchor is the exponent of the largest magnitude after rounding to m mantissa bits (C4, C5).
 * Rounding adds a constant-d integer step to the FP32 pattern and clears the dropped bits, and
 * magnitudes below 2^min_exponent flush to zero of the same sign (C12). This is the integer
 * arithmetic of reference/quantize_lean.py, which stays the reference.
 *
 * Both functions return None for the cases that the numpy path handles by its general rules:
 * an empty tensor, inf or NaN, no FP32 normal value, a maximum that rounds to 2^128, and an
 * FP32 subnormal input when the window reaches below 2^-126. Only nearest-even and
 * toward-zero rounding are served here; stochastic rounding stays in numpy.
 *
 * width_gradients sums g * (Q_high - Q_low) in float64 in exactly the order of numpy 2.x's
 * np.sum(float32_array, dtype=np.float64): blocks of SUM_BLOCK values (numpy's default buffer
 * size) cast to float64, each summed pairwise with 8 accumulators over runs of up to 128
 * values, and the block sums added in turn to +0.0. The caller checks np.getbufsize().
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAGNITUDE_MASK 0x7FFFFFFFu
#define FP32_INF_BITS 0x7F800000u
#define FP32_MIN_NORMAL_BITS 0x00800000u
#define SUM_BLOCK 8192
#define PAIRWISE_BLOCK 128
#define MAX_PAIRS 4

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

enum { NEAREST_EVEN = 0, TOWARD_ZERO = 1 };

/* Constants of one corner Q(x; e, m): the integer rounding step and the flush threshold. */
typedef struct {
    uint32_t dropped;       /* 23 - m */
    uint32_t parity_mask;   /* 1 where the kept last bit breaks ties (nearest even, 0 < m < 23) */
    uint32_t force_up;      /* 1 at m = 0, where every tie rounds up to significand 2 */
    uint32_t half_minus_one;
    uint32_t keep_mask;
    uint32_t flush_below;   /* magnitude bits of 2^min_exponent, or 0 when nothing flushes */
} Corner;

static int rounded_exponent(uint32_t magnitude, int mantissa_bits, int rounding)
{
    int dropped = 23 - mantissa_bits;
    uint32_t low_mask = (1u << dropped) - 1u;
    uint32_t rounded = magnitude;
    if (dropped > 0 && rounding == NEAREST_EVEN) {
        rounded += 1u << (dropped - 1);
        if (mantissa_bits > 0) {
            rounded += ((magnitude >> dropped) & 1u) - 1u;
        }
    }
    return (int)((rounded & ~low_mask) >> 23) - 127;
}

/* Fill *corner for Q(x; e, m) given the tensor's largest and smallest nonzero magnitudes.
 * Return 0, or -1 when the numpy path must narrow at these widths. */
static int make_corner(Corner *corner, int exponent_bits, int mantissa_bits, int rounding,
                       uint32_t largest, uint32_t smallest_nonzero)
{
    int anchor = rounded_exponent(largest, mantissa_bits, rounding);
    if (anchor > 127) {
        return -1;  /* the max rounds to 2^128 and overflows */
    }
    int min_exponent = anchor - ((1 << exponent_bits) - 2);
    if (min_exponent > -126) {
        corner->flush_below = (uint32_t)(min_exponent + 127) << 23;
    } else if (smallest_nonzero < FP32_MIN_NORMAL_BITS) {
        return -1;  /* an FP32 subnormal input inside the window needs the exact path */
    } else {
        corner->flush_below = 0;
    }
    uint32_t dropped = (uint32_t)(23 - mantissa_bits);
    int rounds = dropped > 0 && rounding == NEAREST_EVEN;
    corner->dropped = dropped;
    corner->parity_mask = (rounds && mantissa_bits > 0) ? 1u : 0u;
    corner->force_up = (rounds && mantissa_bits == 0) ? 1u : 0u;
    corner->half_minus_one = rounds ? (1u << (dropped - 1)) - 1u : 0u;
    corner->keep_mask = (uint32_t)(0xFFFFFFFFull << dropped);
    return 0;
}

/* The rounded pattern of one element. The sign rides along: no carry reaches it, because
 * every magnitude is at most the largest, whose rounding stays below 2^128. */
static inline uint32_t narrow_bits(uint32_t bits, const Corner *c)
{
    uint32_t step = c->half_minus_one + (((bits >> c->dropped) & c->parity_mask) | c->force_up);
    uint32_t rounded = (bits + step) & c->keep_mask;
    uint32_t magnitude = rounded & MAGNITUDE_MASK;
    uint32_t flushed = magnitude & (0u - (uint32_t)(magnitude < c->flush_below));
    return rounded ^ flushed;
}

static inline float float_of(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

VECTOR_CLONES
static void magnitude_range(const uint32_t *bits, Py_ssize_t n, uint32_t *largest,
                            uint32_t *smallest_nonzero)
{
    uint32_t high = 0, low_minus_one = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t magnitude = bits[i] & MAGNITUDE_MASK;
        /* Subtracting 1 wraps zeros to the top, so the minimum finds the smallest nonzero. */
        uint32_t wrapped = magnitude - 1u;
        high = magnitude > high ? magnitude : high;
        low_minus_one = wrapped < low_minus_one ? wrapped : low_minus_one;
    }
    *largest = high;
    *smallest_nonzero = low_minus_one + 1u;
}

VECTOR_CLONES
static void narrow_loop(const uint32_t *bits, uint32_t *out, Py_ssize_t n, Corner corner)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = narrow_bits(bits[i], &corner);
    }
}

VECTOR_CLONES
static void slope_terms(const uint32_t *bits, const float *g, float *terms, Py_ssize_t n,
                        Corner low, Corner high)
{
    /* The float32 difference is exact (both values round the same x), and the product rounds
     * once, as in the numpy path. */
    for (Py_ssize_t i = 0; i < n; i++) {
        float difference = float_of(narrow_bits(bits[i], &high))
                           - float_of(narrow_bits(bits[i], &low));
        terms[i] = g[i] * difference;
    }
}

/* numpy's pairwise summation of float64 values, here of float32 values cast on the fly. */
static double pairwise_sum(const float *a, Py_ssize_t n)
{
    if (n < 8) {
        double sum = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) {
            sum += (double)a[i];
        }
        return sum;
    }
    if (n <= PAIRWISE_BLOCK) {
        double r[8];
        for (int j = 0; j < 8; j++) {
            r[j] = (double)a[j];
        }
        Py_ssize_t i;
        for (i = 8; i < n - (n % 8); i += 8) {
            for (int j = 0; j < 8; j++) {
                r[j] += (double)a[i + j];
            }
        }
        double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            sum += (double)a[i];
        }
        return sum;
    }
    Py_ssize_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* Buffers of the Python arguments, released together. */
typedef struct {
    Py_buffer views[3];
    int count;
} Views;

static void release_views(Views *views)
{
    for (int i = 0; i < views->count; i++) {
        PyBuffer_Release(&views->views[i]);
    }
    views->count = 0;
}

/* Take a C-contiguous buffer of 4-byte items (float32 or uint32) as the next view. */
static Py_buffer *get_view(Views *views, PyObject *object, const char *name, int writable)
{
    Py_buffer *view = &views->views[views->count];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: must be a C-contiguous%s float32 array; got %.100s (pass "
                     "np.ascontiguousarray(%s, dtype=np.float32))",
                     name, writable ? ", writable" : "", Py_TYPE(object)->tp_name, name);
        return NULL;
    }
    views->count++;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') {
        format++;
    }
    if (view->itemsize != 4 || (strcmp(format, "f") != 0 && strcmp(format, "I") != 0)) {
        PyErr_Format(PyExc_TypeError,
                     "%s: must hold float32 or uint32 items; got format '%s' with itemsize %zd",
                     name, view->format ? view->format : "B", view->itemsize);
        return NULL;
    }
    return view;
}

static int parse_widths(int exponent_bits, int mantissa_bits, int rounding)
{
    if (exponent_bits < 1 || exponent_bits > 8) {
        PyErr_Format(PyExc_ValueError, "exponent_bits: must be in 1..8; got %d", exponent_bits);
        return -1;
    }
    if (mantissa_bits < 0 || mantissa_bits > 23) {
        PyErr_Format(PyExc_ValueError, "mantissa_bits: must be in 0..23; got %d", mantissa_bits);
        return -1;
    }
    if (rounding != NEAREST_EVEN && rounding != TOWARD_ZERO) {
        PyErr_Format(PyExc_ValueError,
                     "rounding: must be 0 (nearest even) or 1 (toward zero); got %d", rounding);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(narrow_doc,
"narrow(x, out, exponent_bits, mantissa_bits, rounding) -> (largest, smallest_nonzero) or None\n\n"
"Write Q(x; e, m) at the max anchor into out (both C-contiguous float32 of one size) and\n"
"return the magnitude bits of the largest and the smallest nonzero |x|. Return None, leaving\n"
"out unspecified, when the numpy path must narrow x. rounding: 0 nearest even, 1 toward zero.");

static PyObject *narrow(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_object, *out_object;
    int exponent_bits, mantissa_bits, rounding;
    if (!PyArg_ParseTuple(args, "OOiii:narrow", &x_object, &out_object, &exponent_bits,
                          &mantissa_bits, &rounding)) {
        return NULL;
    }
    if (parse_widths(exponent_bits, mantissa_bits, rounding) != 0) {
        return NULL;
    }
    Views views = {.count = 0};
    Py_buffer *x = get_view(&views, x_object, "x", 0);
    Py_buffer *out = x ? get_view(&views, out_object, "out", 1) : NULL;
    if (out == NULL) {
        release_views(&views);
        return NULL;
    }
    if (out->len != x->len) {
        PyErr_Format(PyExc_ValueError, "out: must have the size of x (%zd values); got %zd",
                     x->len / 4, out->len / 4);
        release_views(&views);
        return NULL;
    }
    Py_ssize_t n = x->len / 4;
    const uint32_t *bits = x->buf;
    uint32_t largest = 0, smallest_nonzero = 0;
    int served = 0;
    Py_BEGIN_ALLOW_THREADS
    if (n > 0) {
        magnitude_range(bits, n, &largest, &smallest_nonzero);
        Corner corner;
        if (largest < FP32_INF_BITS && largest >= FP32_MIN_NORMAL_BITS
            && make_corner(&corner, exponent_bits, mantissa_bits, rounding, largest,
                           smallest_nonzero) == 0) {
            narrow_loop(bits, out->buf, n, corner);
            served = 1;
        }
    }
    Py_END_ALLOW_THREADS
    release_views(&views);
    if (!served) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(kk)", (unsigned long)largest, (unsigned long)smallest_nonzero);
}

PyDoc_STRVAR(width_gradients_doc,
"width_gradients(x, g, largest, smallest_nonzero, rounding, pairs) -> tuple of float or None\n\n"
"For each ((e_low, m_low), (e_high, m_high)) in pairs (at most 4), return\n"
"sum(g * (Q(x; e_high, m_high) - Q(x; e_low, m_low))) with float32 products summed in float64\n"
"in numpy's order. x and g are C-contiguous float32 arrays of one size; largest and\n"
"smallest_nonzero are what narrow returned for x. Return None when the numpy path must\n"
"narrow some corner.");

static int parse_pair_item(PyObject *item, int *exponent_bits, int *mantissa_bits)
{
    if (!PyArg_ParseTuple(item, "ii", exponent_bits, mantissa_bits)) {
        PyErr_SetString(PyExc_TypeError,
                        "pairs: each corner must be a tuple (exponent_bits, mantissa_bits) of int");
        return -1;
    }
    return 0;
}

static PyObject *width_gradients(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_object, *g_object, *pairs_object;
    unsigned long largest_arg, smallest_arg;
    int rounding;
    if (!PyArg_ParseTuple(args, "OOkkiO:width_gradients", &x_object, &g_object, &largest_arg,
                          &smallest_arg, &rounding, &pairs_object)) {
        return NULL;
    }
    PyObject *pairs = PySequence_Fast(pairs_object, "pairs: must be a sequence of pairs of "
                                      "(exponent_bits, mantissa_bits) tuples");
    if (pairs == NULL) {
        return NULL;
    }
    Py_ssize_t pair_count = PySequence_Fast_GET_SIZE(pairs);
    if (pair_count < 1 || pair_count > MAX_PAIRS) {
        PyErr_Format(PyExc_ValueError, "pairs: must hold 1 to %d pairs; got %zd", MAX_PAIRS,
                     pair_count);
        Py_DECREF(pairs);
        return NULL;
    }
    int widths[MAX_PAIRS][2][2];
    for (Py_ssize_t p = 0; p < pair_count; p++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(pairs, p);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "pairs: each pair must be a tuple (low, high) of "
                            "(exponent_bits, mantissa_bits) tuples");
            Py_DECREF(pairs);
            return NULL;
        }
        for (int side = 0; side < 2; side++) {
            int *w = widths[p][side];
            if (parse_pair_item(PyTuple_GET_ITEM(pair, side), &w[0], &w[1]) != 0
                || parse_widths(w[0], w[1], rounding) != 0) {
                Py_DECREF(pairs);
                return NULL;
            }
        }
    }
    Py_DECREF(pairs);

    uint32_t largest = (uint32_t)largest_arg, smallest_nonzero = (uint32_t)smallest_arg;
    if (largest_arg != largest || largest < FP32_MIN_NORMAL_BITS || largest >= FP32_INF_BITS
        || smallest_arg != smallest_nonzero || smallest_nonzero == 0
        || smallest_nonzero > largest) {
        PyErr_Format(PyExc_ValueError,
                     "largest, smallest_nonzero: must be the magnitude bits that narrow returned "
                     "(a finite FP32 normal maximum and a nonzero minimum below it); got "
                     "0x%08lx, 0x%08lx", largest_arg, smallest_arg);
        return NULL;
    }
    Corner low[MAX_PAIRS], high[MAX_PAIRS];
    for (Py_ssize_t p = 0; p < pair_count; p++) {
        if (make_corner(&low[p], widths[p][0][0], widths[p][0][1], rounding, largest,
                        smallest_nonzero) != 0
            || make_corner(&high[p], widths[p][1][0], widths[p][1][1], rounding, largest,
                           smallest_nonzero) != 0) {
            Py_RETURN_NONE;
        }
    }

    Views views = {.count = 0};
    Py_buffer *x = get_view(&views, x_object, "x", 0);
    Py_buffer *g = x ? get_view(&views, g_object, "g", 0) : NULL;
    if (g == NULL) {
        release_views(&views);
        return NULL;
    }
    if (g->len != x->len || x->len == 0) {
        PyErr_Format(PyExc_ValueError, "g: must have the size of x, which must not be empty; "
                     "got %zd and %zd values", g->len / 4, x->len / 4);
        release_views(&views);
        return NULL;
    }
    float *terms = malloc(SUM_BLOCK * sizeof(float));
    if (terms == NULL) {
        release_views(&views);
        return PyErr_NoMemory();
    }
    Py_ssize_t n = x->len / 4;
    const uint32_t *bits = x->buf;
    const float *gradient = g->buf;
    double sums[MAX_PAIRS] = {0.0, 0.0, 0.0, 0.0};
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < pair_count; p++) {
        for (Py_ssize_t start = 0; start < n; start += SUM_BLOCK) {
            Py_ssize_t count = n - start < SUM_BLOCK ? n - start : SUM_BLOCK;
            slope_terms(bits + start, gradient + start, terms, count, low[p], high[p]);
            sums[p] += pairwise_sum(terms, count);
        }
    }
    Py_END_ALLOW_THREADS
    free(terms);
    release_views(&views);

    PyObject *result = PyTuple_New(pair_count);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t p = 0; p < pair_count; p++) {
        PyObject *value = PyFloat_FromDouble(sums[p]);
        if (value == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, p, value);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"narrow", narrow, METH_VARARGS, narrow_doc},
    {"width_gradients", width_gradients, METH_VARARGS, width_gradients_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "reference.native._training",
    "The training container and the Quantum width gradients in C (see training.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__training(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "SUM_BLOCK", SUM_BLOCK) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
