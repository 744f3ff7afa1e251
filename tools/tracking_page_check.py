#!/usr/bin/env python3
"""Screenshots the gateway's tracking page twice in headless Chromium and finds the drone.

    tracking_page_check.py URL OUTDIR [SECONDS_BETWEEN]

The page draws the drone as a dot of colour #15c (17, 85, 204). For each screenshot this prints
where that dot's pixels are (their centre), as JSON: {"first": [x, y], "second": [x, y],
"moved": pixels}. A dot that is not found is null. Chromium comes from Debian (`chromium`).
"""
import json
import subprocess
import sys
import time

from PIL import Image

DRONE = (17, 85, 204)


def screenshot(url, path):
    subprocess.run(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--window-size=800,800", "--virtual-time-budget=6000",
         f"--screenshot={path}", url],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)


def drone_centre(path):
    image = Image.open(path).convert("RGB")
    width, height = image.size
    pixels = image.load()
    xs, ys = [], []
    for y in range(height):
        for x in range(width):
            r, g, b = pixels[x, y]
            if abs(r - DRONE[0]) < 12 and abs(g - DRONE[1]) < 12 and abs(b - DRONE[2]) < 12:
                xs.append(x)
                ys.append(y)
    if len(xs) < 20:
        return None
    return [sum(xs) / len(xs), sum(ys) / len(ys)]


def main():
    url, out = sys.argv[1], sys.argv[2]
    gap = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    first_path, second_path = f"{out}/track-1.png", f"{out}/track-2.png"
    screenshot(url, first_path)
    time.sleep(gap)
    screenshot(url, second_path)
    first, second = drone_centre(first_path), drone_centre(second_path)
    moved = None
    if first and second:
        moved = ((first[0] - second[0]) ** 2 + (first[1] - second[1]) ** 2) ** 0.5
    print(json.dumps({"first": first, "second": second, "moved": moved}))


if __name__ == "__main__":
    main()
