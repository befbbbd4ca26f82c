/* Compiled kernel of reference.quantize_blocked.quantize_bits_blocked (SPEC.md C7-C16).
 *
 * It gives the same FP32 bit patterns as the numpy path. Each block of BLOCK_ELEMENTS values
 * goes through one branch-free loop that rounds every pattern with the constant d = 23 - m
 * dropped bits (exact for finite values inside the window's fast range) and flags the others:
 * values below that range (container subnormals, FP32 subnormals) and above it (overflow, inf,
 * NaN). A scalar routine then recomputes the flagged values one at a time with the general
 * rule of reference.quantize.quantize_bits. An element that the container cannot hold makes
 * the kernel return OUT_OF_RANGE: a NaN without a NaN code, or an overflow or inf where the
 * container neither saturates nor has inf or NaN. Python then reruns the numpy path, which
 * raises the error with the element's index.
 *
 * Python passes the window's constants, so this file never decides a container rule itself.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define SIGN_MASK 0x80000000u
#define MAGNITUDE_MASK 0x7FFFFFFFu
#define FRACTION_MASK 0x007FFFFFu
#define IMPLICIT_BIT 0x00800000u
#define FP32_INF 0x7F800000u
#define FP32_QUIET_NAN 0x7FC00000u

/* 8 KiB each of input, noise and output, and 2 KiB of flags: a block stays in L1 cache for
 * the pass over flagged elements. */
#define BLOCK_ELEMENTS 2048

/* On x86-64 machines with AVX2 the vector loops run on 8 lanes. They use integer operations
 * only, so both clones give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__)
#define FAST_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FAST_CLONES
#endif

enum { DONE = 0, OUT_OF_RANGE = 1 };

/* Rounding of the fast loop. NEAREST_UP is nearest-even with m = 0, where every binade's grid
 * has significands 1 and 2, so ties go up. TRUNCATE also serves d = 0 in every mode. */
enum { TRUNCATE = 0, NEAREST_EVEN = 1, NEAREST_UP = 2, STOCHASTIC = 3 };

/* The general routine's rounding modes, numbered as in reference.quantize_blocked. */
enum { MODE_NEAREST_EVEN = 0, MODE_TOWARD_ZERO = 1, MODE_STOCHASTIC = 2 };

typedef struct {
    /* Fast loop: constant-d rounding of FP32 patterns, then the flush below min_normal. */
    int fast_rounding;
    int dropped;
    uint32_t keep_mask;
    uint32_t half_minus_one;
    uint32_t low_mask;
    uint32_t exact_from;      /* smallest nonzero magnitude that the fast loop rounds exactly */
    uint32_t max_bits;        /* largest magnitude that the fast loop rounds exactly */
    uint32_t flush_below;     /* rounded magnitudes below this become zero; 0 turns it off */

    /* General routine: the window of reference.quantize.quantize_bits. */
    int rounding;
    int mantissa_bits;
    int subnormals;
    int min_exponent;
    double min_normal;
    double max_value;
    int saturate;
    int has_inf;
    int has_nan;
    uint32_t saturation_bits;
} Plan;

/* ---- the general routine, one element at a time ---- */

static int leading_bit(uint32_t value)
{
    int position = 0;
    while (value >>= 1) {
        position++;
    }
    return position;
}

/* Round the finite nonzero magnitude ``magnitude`` as quantize_bits does; return the value. */
static double round_general(uint32_t magnitude, uint32_t noise, const Plan *plan)
{
    /* value = significand * 2^(exponent - 52) with significand in [2^52, 2^53), as after the
     * exact widening to float64 in the numpy path. */
    uint32_t field = magnitude >> 23;
    int exponent;
    uint64_t significand;
    if (field > 0) {
        exponent = (int)field - 127;
        significand = (uint64_t)((magnitude & FRACTION_MASK) | IMPLICIT_BIT) << 29;
    } else {
        int lead = leading_bit(magnitude);
        exponent = lead - 149;
        significand = (uint64_t)magnitude << (52 - lead);
    }

    int lsb_exponent = exponent - plan->mantissa_bits;
    if (plan->subnormals && exponent < plan->min_exponent) {
        lsb_exponent = plan->min_exponent - plan->mantissa_bits;
    }
    int dropped = lsb_exponent - (exponent - 52); /* at least 29 */
    /* Significands are below 2^53, so dropping 54 or more bits leaves zero below half. */
    int clamped = dropped < 54 ? dropped : 54;
    uint64_t kept = significand >> clamped;
    uint64_t rest = significand & ((UINT64_C(1) << clamped) - 1);
    if (plan->rounding == MODE_NEAREST_EVEN) {
        uint64_t half = UINT64_C(1) << (clamped - 1);
        kept += (rest > half) | ((rest == half) & (kept & 1));
    } else if (plan->rounding == MODE_STOCHASTIC) {
        /* Only the 32 leading dropped bits count (C10). */
        uint64_t threshold;
        if (dropped > 32) {
            int shift = dropped - 32 < 63 ? dropped - 32 : 63;
            threshold = rest >> shift;
        } else {
            threshold = rest << (32 - dropped);
        }
        kept += (uint64_t)noise < threshold;
    }
    /* kept * 2^lsb_exponent is exact: kept < 2^54 and -450 < lsb_exponent < 128. */
    uint64_t scale_bits = (uint64_t)(lsb_exponent + 1023) << 52;
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return (double)kept * scale;
}

/* Narrow one FP32 pattern as quantize_bits does; return OUT_OF_RANGE where it raises. */
static int quantize_general(uint32_t bits, uint32_t noise, const Plan *plan, uint32_t *result)
{
    uint32_t sign = bits & SIGN_MASK;
    uint32_t magnitude = bits & MAGNITUDE_MASK;
    if (magnitude > FP32_INF) {
        if (!plan->has_nan) {
            return OUT_OF_RANGE;
        }
        *result = FP32_QUIET_NAN | sign; /* any payload becomes the quiet NaN (C14) */
        return DONE;
    }
    if (magnitude == 0) {
        *result = bits;
        return DONE;
    }

    int overflow = magnitude == FP32_INF;
    uint32_t rounded = 0;
    if (!overflow) {
        double value = round_general(magnitude, noise, plan);
        if (!plan->subnormals && value < plan->min_normal) {
            value = 0.0; /* flushed after rounding (C12) */
        }
        overflow = value > plan->max_value; /* judged after rounding (C13) */
        if (!overflow) {
            /* Every rounded value is an FP32 value, so this cast is exact. */
            float narrow = (float)value;
            memcpy(&rounded, &narrow, sizeof rounded);
        }
    }
    if (overflow) {
        if (plan->saturate) {
            rounded = plan->saturation_bits;
        } else if (plan->has_inf) {
            rounded = FP32_INF;
        } else if (plan->has_nan) {
            rounded = FP32_QUIET_NAN;
        } else {
            return OUT_OF_RANGE;
        }
    }
    *result = rounded | sign;
    return DONE;
}

/* ---- the fast loop over one block ---- */

/* One loop per rounding, so that each is branch-free and vectorizes. The flush keeps the sign
 * of a pattern whose rounded magnitude lies below min_normal (C12, C16). A flag marks a nonzero
 * magnitude outside exact_from..max_bits; zeros round exactly in every mode. */
#define FAST_LOOP(ROUNDED)                                                                    \
    do {                                                                                      \
        for (size_t i = 0; i < size; i++) {                                                   \
            uint32_t b = bits[i];                                                             \
            uint32_t r = (ROUNDED) & keep_mask;                                               \
            r = (int32_t)(r & MAGNITUDE_MASK) < flush_below ? (b & SIGN_MASK) : r;            \
            out[i] = r;                                                                       \
            int32_t magnitude = (int32_t)(b & MAGNITUDE_MASK);                                \
            int32_t flag = ((magnitude != 0) & (magnitude < exact_from)) |                    \
                           (magnitude > max_bits);                                            \
            flags[i] = (uint8_t)flag;                                                         \
            any |= flag;                                                                      \
        }                                                                                     \
    } while (0)

/* Magnitudes are below 2^31, so the flag and flush compares are signed: SSE2 has no unsigned
 * compare. */
FAST_CLONES
static int round_fast(const uint32_t *restrict bits, const uint32_t *restrict noise,
                      uint32_t *restrict out, uint8_t *restrict flags, size_t size,
                      const Plan *plan)
{
    const uint32_t keep_mask = plan->keep_mask;
    const uint32_t half_minus_one = plan->half_minus_one;
    const uint32_t low_mask = plan->low_mask;
    const int32_t flush_below = (int32_t)plan->flush_below;
    const int32_t exact_from = (int32_t)plan->exact_from;
    const int32_t max_bits = (int32_t)plan->max_bits;
    const int dropped = plan->dropped;
    int32_t any = 0;
    switch (plan->fast_rounding) {
    case NEAREST_EVEN:
        FAST_LOOP(b + ((b >> dropped) & 1u) + half_minus_one);
        break;
    case NEAREST_UP:
        FAST_LOOP(b + half_minus_one + 1u);
        break;
    case STOCHASTIC:
        /* Up iff R < D * 2^(32 - d), which is iff D + (2^d - 1 - (R >> (32 - d))) carries out
         * of the d dropped bits. */
        FAST_LOOP(b + (low_mask - (noise[i] >> (32 - dropped))));
        break;
    default:
        FAST_LOOP(b);
        break;
    }
    return any != 0;
}

static int quantize_block(const uint32_t *bits, const uint32_t *noise, uint32_t *out,
                          size_t size, const Plan *plan)
{
    uint8_t flags[BLOCK_ELEMENTS + 8];
    if (!round_fast(bits, noise, out, flags, size, plan)) {
        return DONE;
    }
    memset(flags + size, 0, 8); /* the last word may reach past the block */
    /* Flagged elements are rare in real tensors, so eight flags are tested at once. */
    for (size_t start = 0; start < size; start += 8) {
        uint64_t word;
        memcpy(&word, flags + start, sizeof word);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Each flag is a byte 0 or 1, so the lowest set bit lies in the lowest flagged byte. */
        for (; word != 0; word &= word - 1) {
            size_t i = start + ((size_t)__builtin_ctzll(word) >> 3);
#else
        for (size_t i = start; word != 0 && i < start + 8 && i < size; i++) {
            if (!flags[i]) {
                continue;
            }
#endif
            if (quantize_general(bits[i], noise ? noise[i] : 0u, plan, &out[i]) != DONE) {
                return OUT_OF_RANGE;
            }
        }
    }
    return DONE;
}

static int quantize_all(const uint32_t *bits, const uint32_t *noise, uint32_t *out,
                        size_t size, const Plan *plan)
{
    for (size_t start = 0; start < size; start += BLOCK_ELEMENTS) {
        size_t count = size - start < BLOCK_ELEMENTS ? size - start : BLOCK_ELEMENTS;
        const uint32_t *block_noise = noise ? noise + start : NULL;
        if (quantize_block(bits + start, block_noise, out + start, count, plan) != DONE) {
            return OUT_OF_RANGE;
        }
    }
    return DONE;
}

/* Narrow BF16 codes (the high halves of FP32 patterns) through FP32 blocks. Every result of a
 * base-bf16 window is a BF16 value, so its low half is zero and the high half is the code. */
static int quantize_halves(const uint16_t *halves, const uint32_t *noise, uint16_t *out,
                           size_t size, const Plan *plan)
{
    uint32_t wide[BLOCK_ELEMENTS];
    uint32_t rounded[BLOCK_ELEMENTS];
    for (size_t start = 0; start < size; start += BLOCK_ELEMENTS) {
        size_t count = size - start < BLOCK_ELEMENTS ? size - start : BLOCK_ELEMENTS;
        for (size_t i = 0; i < count; i++) {
            wide[i] = (uint32_t)halves[start + i] << 16;
        }
        const uint32_t *block_noise = noise ? noise + start : NULL;
        if (quantize_block(wide, block_noise, rounded, count, plan) != DONE) {
            return OUT_OF_RANGE;
        }
        for (size_t i = 0; i < count; i++) {
            out[start + i] = (uint16_t)(rounded[i] >> 16);
        }
    }
    return DONE;
}

/* ---- reductions ---- */

FAST_CLONES
static uint32_t largest_finite(const uint32_t *restrict bits, size_t size)
{
    /* FP32 magnitudes order like their patterns; all are below 2^31, so int32 compares work. */
    int32_t largest = 0;
    for (size_t i = 0; i < size; i++) {
        int32_t magnitude = (int32_t)(bits[i] & MAGNITUDE_MASK);
        magnitude = magnitude < (int32_t)FP32_INF ? magnitude : 0;
        largest = magnitude > largest ? magnitude : largest;
    }
    return (uint32_t)largest;
}

FAST_CLONES
static uint32_t largest_finite_half(const uint16_t *restrict halves, size_t size)
{
    int32_t largest = 0;
    for (size_t i = 0; i < size; i++) {
        int32_t magnitude = halves[i] & 0x7FFF;
        magnitude = magnitude < 0x7F80 ? magnitude : 0;
        largest = magnitude > largest ? magnitude : largest;
    }
    return (uint32_t)largest << 16;
}

FAST_CLONES
static Py_ssize_t first_non_bf16(const uint32_t *bits, size_t size)
{
    for (size_t start = 0; start < size; start += BLOCK_ELEMENTS) {
        size_t stop = size - start < BLOCK_ELEMENTS ? size : start + BLOCK_ELEMENTS;
        uint32_t any = 0;
        for (size_t i = start; i < stop; i++) {
            uint32_t magnitude = bits[i] & MAGNITUDE_MASK;
            /* NaNs are exempt: their payloads may use the low bits. */
            any |= (uint32_t)((bits[i] & 0xFFFFu) != 0) & (uint32_t)(magnitude <= FP32_INF);
        }
        if (!any) {
            continue;
        }
        for (size_t i = start; i < stop; i++) {
            if ((bits[i] & 0xFFFFu) != 0 && (bits[i] & MAGNITUDE_MASK) <= FP32_INF) {
                return (Py_ssize_t)i;
            }
        }
    }
    return -1;
}

/* ---- Python bindings ---- */

/* Get a C-contiguous buffer of 4-byte items (FP32 patterns), or with ``halves`` also of
 * 2-byte items (BF16 codes); on failure set an exception and return -1. */
static int get_items(PyObject *object, Py_buffer *view, int writable, int halves,
                     const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) != 0) {
        return -1;
    }
    if (view->itemsize != 4 && !(halves && view->itemsize == 2)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must hold 4-byte items (uint32 FP32 bit patterns)%s; got item size %zd",
                     name, halves ? " or 2-byte items (uint16 BF16 codes)" : "",
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int parse_plan(PyObject *constants, Plan *plan)
{
    if (!PyTuple_Check(constants)) {
        PyErr_SetString(PyExc_TypeError, "plan must be a tuple from reference.quantize_blocked");
        return -1;
    }
    unsigned int keep_mask, half_minus_one, low_mask, exact_from, max_bits, flush_below,
        saturation_bits;
    if (!PyArg_ParseTuple(constants,
                          "iiIIIIIIiiiiddpppI;plan must hold the 18 window constants",
                          &plan->fast_rounding, &plan->dropped, &keep_mask, &half_minus_one,
                          &low_mask, &exact_from, &max_bits, &flush_below, &plan->rounding,
                          &plan->mantissa_bits, &plan->subnormals, &plan->min_exponent,
                          &plan->min_normal, &plan->max_value, &plan->saturate, &plan->has_inf,
                          &plan->has_nan, &saturation_bits)) {
        return -1;
    }
    plan->keep_mask = keep_mask;
    plan->half_minus_one = half_minus_one;
    plan->low_mask = low_mask;
    plan->exact_from = exact_from;
    plan->max_bits = max_bits;
    plan->flush_below = flush_below;
    plan->saturation_bits = saturation_bits;
    if (plan->dropped < 0 || plan->dropped > 23 || plan->exact_from < 1 ||
        plan->mantissa_bits < 0 || plan->mantissa_bits > 23 || plan->rounding < 0 ||
        plan->rounding > 2 || plan->fast_rounding < 0 || plan->fast_rounding > 3 ||
        (plan->fast_rounding != TRUNCATE && plan->dropped == 0) ||
        ((plan->fast_rounding == STOCHASTIC) != (plan->rounding == MODE_STOCHASTIC &&
                                                 plan->dropped > 0))) {
        PyErr_SetString(PyExc_ValueError,
                        "plan: constants out of range; build it with "
                        "reference.quantize_blocked.native_plan");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(quantize_doc,
"quantize(bits, noise, out, plan) -> int\n\n"
"Write the FP32 patterns of ``bits`` narrowed to the window ``plan`` into ``out``.\n"
"``bits`` and ``out`` are C-contiguous uint32 buffers of FP32 patterns, or uint16 buffers\n"
"of BF16 codes for a base-bf16 window; ``noise`` (None unless rounding is stochastic)\n"
"is uint32. All have one length. Return 0, or 1 when an element is out of range for the\n"
"container (the numpy path then raises the error).");

static PyObject *py_quantize(PyObject *self, PyObject *args)
{
    PyObject *bits_object, *noise_object, *out_object, *constants;
    if (!PyArg_ParseTuple(args, "OOOO:quantize", &bits_object, &noise_object, &out_object,
                          &constants)) {
        return NULL;
    }
    Plan plan;
    if (parse_plan(constants, &plan) != 0) {
        return NULL;
    }
    Py_buffer bits, noise, out;
    int has_noise = noise_object != Py_None;
    if (get_items(bits_object, &bits, 0, 1, "bits") != 0) {
        return NULL;
    }
    if (get_items(out_object, &out, 1, 1, "out") != 0) {
        PyBuffer_Release(&bits);
        return NULL;
    }
    if (has_noise && get_items(noise_object, &noise, 0, 0, "noise") != 0) {
        PyBuffer_Release(&bits);
        PyBuffer_Release(&out);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t size = bits.len / bits.itemsize;
    if (out.itemsize != bits.itemsize) {
        PyErr_Format(PyExc_ValueError,
                     "out must have the item size of bits (%zd); got %zd", bits.itemsize,
                     out.itemsize);
    } else if (out.len / out.itemsize != size || (has_noise && noise.len / 4 != size)) {
        PyErr_Format(PyExc_ValueError,
                     "bits, out and noise must have one length; got %zd, %zd and %zd items",
                     size, out.len / out.itemsize, has_noise ? noise.len / 4 : size);
    } else if ((plan.rounding == MODE_STOCHASTIC) != has_noise) {
        PyErr_SetString(PyExc_ValueError,
                        "noise must be given exactly when rounding is stochastic");
    } else {
        int status;
        const uint32_t *noise_words = has_noise ? (const uint32_t *)noise.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (bits.itemsize == 2) {
            status = quantize_halves((const uint16_t *)bits.buf, noise_words,
                                     (uint16_t *)out.buf, (size_t)size, &plan);
        } else {
            status = quantize_all((const uint32_t *)bits.buf, noise_words, (uint32_t *)out.buf,
                                  (size_t)size, &plan);
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromLong(status);
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&out);
    if (has_noise) {
        PyBuffer_Release(&noise);
    }
    return result;
}

PyDoc_STRVAR(largest_finite_doc,
"largest_finite_magnitude(bits) -> int\n\n"
"Return the largest FP32 magnitude pattern below inf in ``bits`` (0 if none). ``bits``\n"
"holds uint32 FP32 patterns or uint16 BF16 codes.");

static PyObject *py_largest_finite(PyObject *self, PyObject *object)
{
    Py_buffer bits;
    if (get_items(object, &bits, 0, 1, "bits") != 0) {
        return NULL;
    }
    uint32_t largest;
    Py_BEGIN_ALLOW_THREADS
    if (bits.itemsize == 2) {
        largest = largest_finite_half((const uint16_t *)bits.buf, (size_t)(bits.len / 2));
    } else {
        largest = largest_finite((const uint32_t *)bits.buf, (size_t)(bits.len / 4));
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&bits);
    return PyLong_FromUnsignedLong(largest);
}

PyDoc_STRVAR(first_non_bf16_doc,
"first_non_bf16(bits) -> int\n\n"
"Return the index of the first non-NaN pattern with nonzero low 16 bits, or -1.");

static PyObject *py_first_non_bf16(PyObject *self, PyObject *object)
{
    Py_buffer bits;
    if (get_items(object, &bits, 0, 0, "bits") != 0) {
        return NULL;
    }
    Py_ssize_t index;
    Py_BEGIN_ALLOW_THREADS
    index = first_non_bf16((const uint32_t *)bits.buf, (size_t)(bits.len / 4));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&bits);
    return PyLong_FromSsize_t(index);
}

static PyMethodDef methods[] = {
    {"quantize", py_quantize, METH_VARARGS, quantize_doc},
    {"largest_finite_magnitude", py_largest_finite, METH_O, largest_finite_doc},
    {"first_non_bf16", py_first_non_bf16, METH_O, first_non_bf16_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_quantize",
    "Compiled kernel of reference.quantize_blocked (same bits as the numpy path).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__quantize(void)
{
    return PyModule_Create(&module);
}
