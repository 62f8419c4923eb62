"""The shares workload (a script, no tests here): alpha, beta and gamma call work() with 1:2:1
of its CPU. `python shares.py ROUNDS` does that many rounds and ends (fixed work, for the
tests); `python shares.py` prints "ready" and runs until it is killed (benchmarks/python_cost.py
and python_busy.py). Plain Python that every interpreter the tests use (3.8 on) runs."""

import sys


def work(n):
    # the same cost per iteration at any n: i * i past 2**15 would need two 30-bit digits
    # (Include/cpython/longintrepr.h) and make beta's second half slower than alpha's
    s = 0
    for i in range(n):
        s = (s + i) & 0xFFFF
    return s


def alpha(n): return work(n)
def beta(n): return work(2 * n)
def gamma(n): return work(n)


def main(rounds):
    # rounds of varying length (a fixed seed: the same work every run), so the sampler's
    # fixed 10 ms period cannot lock onto the loop's phase; 1:2:1 holds within every round
    seed = 12345
    done = 0
    while rounds is None or done < rounds:
        seed = (seed * 1103515245 + 12345) % 2**31
        n = 10000 + seed % 20000
        alpha(n)
        beta(n)
        gamma(n)
        done += 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(int(sys.argv[1]))
    else:
        print("ready", flush=True)
        main(None)
