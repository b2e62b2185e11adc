#!/usr/bin/env python3
"""Write N realistic products as JSON lines (the `outpost import catalog` format).

Usage: scripts/gen-catalog.py N > catalog.jsonl
Deterministic: the same N gives the same file. Barcodes are valid GTIN-13s in the
GS1 in-store range (prefix 29) so they never clash with real products.
"""
import json
import random
import sys

CATEGORIES = {
    "dairy": ("reduced", 59, 899), "bakery": ("reduced", 49, 699), "produce": ("reduced", 99, 1299),
    "beverages": ("standard", 39, 499), "beer_wine": ("standard", 79, 2999), "snacks": ("reduced", 69, 499),
    "frozen": ("reduced", 149, 1299), "household": ("standard", 99, 1999), "pantry": ("reduced", 49, 899),
}
BRANDS = ["Alpenhof", "Sunvale", "Fjordlund", "Weidenhof", "Nordkap", "Bellacasa", "Greenfield", "Oakridge"]
WORDS = ["Organic", "Classic", "Light", "Farmhouse", "Smoked", "Crunchy", "Fresh", "Golden", "Wild", "Rustic"]
NOUNS = ["Milk", "Gouda", "Yoghurt", "Bread", "Apples", "Lemonade", "Pilsner", "Crisps", "Peas", "Soap", "Pasta", "Rice"]
SIZES = ["250 g", "500 g", "1 kg", "1 L", "0.5 L", "6 x 0.33 L", "200 g"]


def gtin13(n):
    body = f"29{n:010d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def main():
    n = int(sys.argv[1])
    rnd = random.Random(42)
    cats = list(CATEGORIES)
    out = sys.stdout
    for i in range(1, n + 1):
        cat = cats[rnd.randrange(len(cats))]
        tax, lo, hi = CATEGORIES[cat]
        weight = cat == "produce" and rnd.random() < 0.5
        name = f"{rnd.choice(BRANDS)} {rnd.choice(WORDS)} {rnd.choice(NOUNS)}" + ("" if weight else f" {rnd.choice(SIZES)}")
        p = {"sku": f"SKU-{i:07d}", "barcodes": [gtin13(i)], "name": name, "category": cat,
             "price": rnd.randint(lo, hi), "currency": "EUR", "tax_class": tax,
             "sold_by": "weight" if weight else "each", "age_restricted": cat == "beer_wine"}
        out.write(json.dumps(p, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
