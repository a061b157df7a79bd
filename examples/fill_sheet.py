"""Stand in for the lab: fill a batch sheet from a bundled lookup table.

    python examples/fill_sheet.py orr/batches/b001.csv filled-b001.csv --dataset agirpdptru-orr

Reads the sheet written by `activemil propose`, looks every composition up in the bundled table
(`activemil.data.DATASETS`), writes `value`, `unit`, `status=measured` and `source`.
"""

from __future__ import annotations

import argparse

import pandas as pd

from activemil.data import DATASETS, data_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sheet")
    ap.add_argument("out")
    ap.add_argument("--dataset", default="agirpdptru-orr", choices=sorted(DATASETS))
    ap.add_argument("--unit", default="", help="unit written into the sheet (e.g. V)")
    args = ap.parse_args()
    file, target, _direction = DATASETS[args.dataset]
    table = pd.read_csv(data_path(file))
    elements = [c for c in table.columns if c != target]
    sheet = pd.read_csv(args.sheet, dtype=str, keep_default_na=False)

    def key(df: pd.DataFrame) -> pd.Series:
        cols = [df[e].astype(float) if e in df else pd.Series(0.0, index=df.index)
                for e in elements]
        return pd.concat(cols, axis=1).round(3).astype(str).agg("-".join, axis=1)

    lookup = dict(zip(key(table), table[target]))
    sheet["value"] = [lookup[k] for k in key(sheet)]
    sheet["unit"] = args.unit
    sheet["status"] = "measured"
    sheet["source"] = args.dataset
    sheet.to_csv(args.out, index=False)
    print(f"filled {len(sheet)} rows of {args.sheet} from {file} -> {args.out}")


if __name__ == "__main__":
    main()
