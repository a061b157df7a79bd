"""The two attention metrics side by side on synthetic bags with known signal sites.

``signal_attention_ratio`` (activemil.surrogates.metrics; needs ground truth) and attention
sharpness ``exp(KL(a || w))`` (activemil.hypotheses; label-free), for gated-attention MIL
trained on 200 bags (learns) and on 40 bags (does not), at signal shares 5%, 20% and 50% of 40
sites; 300 test bags.

    python benchmarks/attention_metrics.py
"""

from __future__ import annotations

import numpy as np
import torch

from activemil.hypotheses import attention_sharpness
from activemil.surrogates.metrics import signal_attention_ratio
from activemil.surrogates.mil import MILRegressor
from activemil.surrogates.synthetic import make_synthetic_bags


def main() -> None:
    torch.set_num_threads(1)
    print("| signal share | n train | epochs | signal attention ratio (ceiling 1/share) | "
          "top-1 hit | sharpness median [q10, q90] | n / sharpness |")
    print("|---|---|---|---|---|---|---|")
    for frac in (0.05, 0.2, 0.5):
        for n, epochs in ((200, 200), (40, 400)):
            bags, y, sig = make_synthetic_bags(n + 300, 40, 6, frac, 0.0, 0.05, seed=11)
            tr, te = np.arange(n), np.arange(n, n + 300)
            model = MILRegressor("attention", seed=0, max_epochs=epochs, patience=40,
                                 hidden=32).fit(bags.subset(tr), y[tr])
            tb = bags.subset(te)
            p = model.predict(tb)
            ratio, hit = signal_attention_ratio(p.attention, sig[te], tb.mask)
            s = np.array([attention_sharpness(p.attention[i], tb.weights[i], tb.mask[i])
                          for i in range(len(te))])
            print(f"| {frac:.0%} | {n} | {epochs} | {ratio:.2f} ({1 / frac:.0f}) | {hit:.2f} | "
                  f"{np.median(s):.2f} [{np.quantile(s, 0.1):.2f}, {np.quantile(s, 0.9):.2f}] | "
                  f"{40 / np.median(s):.1f} |", flush=True)


if __name__ == "__main__":
    main()
