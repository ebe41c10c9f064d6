#!/usr/bin/env python3
"""Print the first outputs of Backprop's RandomGenerator, computed independently in Python.

The generator is xoshiro256** (Blackman and Vigna) seeded by SplitMix64, and normal samples come
from the Box-Muller transform in double precision. This script implements both from their
published definitions; RandomTests.swift holds the numbers it printed:

    python3 Tests/BackpropTests/Fixtures/make_random.py
"""
import math

MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Xoshiro256StarStar:
    def __init__(self, seed):
        state = seed
        self.s = []
        for _ in range(4):
            state, value = splitmix64(state)
            self.s.append(value)

    def next(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0**-53

    def normal_pair(self):
        u1 = 1 - self.uniform()
        u2 = self.uniform()
        r = math.sqrt(-2 * math.log(u1))
        return r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)


g = Xoshiro256StarStar(42)
print("next() for seed 42:", [g.next() for _ in range(4)])
g = Xoshiro256StarStar(7)
pairs = [g.normal_pair() for _ in range(3)]
print("normals for seed 7:", [repr(v) for pair in pairs for v in pair])
