// The range reduction that Softmax.c's and Activations.c's exponentials share, for t ≤ 0:
// k = rint(t / ln 2) as fma(t, LOG2E, SHIFTER) - SHIFTER, r = t - k·ln 2 in two fused steps with
// ln 2 = LN2_HI + LN2_LO, and the scaling by 2^k. Included by those two files only.

#ifndef BACKPROP_EXP_REDUCTION_H
#define BACKPROP_EXP_REDUCTION_H

#include <string.h>

static const double LOG2E = 1.44269504088896338700e+00;
static const double SHIFTER = 0x1.8p52;
// fdlibm's split of ln 2: LN2_HI has 32 significant bits, so k·LN2_HI is exact for |k| < 2²¹.
static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;

/// 2^k for a whole number k in [-1022, 1023] held in a double.
static inline double powerOfTwo(double k) {
    double shifted = k + SHIFTER, shifter = SHIFTER;
    long long bits, base;
    memcpy(&bits, &shifted, sizeof bits);
    memcpy(&base, &shifter, sizeof base);
    long long exponent = (bits - base + 1023) << 52;
    double result;
    memcpy(&result, &exponent, sizeof result);
    return result;
}

#endif
