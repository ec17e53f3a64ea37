"""Where one iteration of ``expreg.train`` spends its time (cProfile over 10 steps, after 2 warm ones; issue 25).

    python benchmarks/profile_train.py 512 128 32768

Prints the cumulative times of the loop's parts (``measure``: forward and backward; ``advance``: the step and the
movement of the new weights) per call. cProfile sees the calling thread only; the blocked passes run on every core.
"""

import cProfile
import pstats
import sys

import numpy as np

import expreg

n, d, m = (int(v) for v in sys.argv[1:4]) if len(sys.argv) > 3 else (512, 128, 32768)
X, y = expreg.make_dataset(n, d, seed=0)
net = expreg.ExpNet.draw(d, m, seed=0, dtype=np.float32)
expreg.train(net, X, y, max_steps=2, epsilon=0.0, record_every=0, lr=1e-9)
profile = cProfile.Profile()
profile.enable()
expreg.train(net, X, y, max_steps=10, epsilon=0.0, record_every=0, lr=1e-9)
profile.disable()
stats = pstats.Stats(profile).sort_stats("cumulative")
stats.print_stats(r"descent.py.*\((descend|measure|advance)\)|ops.py.*\((forward_backward|advance)\)")
