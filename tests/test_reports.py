"""Run reports: confusions from the alignment, gallery and curves written as real PNGs."""
import numpy as np
from PIL import Image

from tf_crnn import reports
from tf_crnn.experiment.experiments import bounded_captured_out


def test_confusions_count_substitutions_deletions_insertions():
    counts = reports.confusions([tuple("ſehr"), tuple("ab")], [tuple("fehr"), tuple("abc")])
    assert counts == {("ſ", "f"): 1, ("", "c"): 1}
    counts = reports.confusions([tuple("abc")], [tuple("ac")])
    assert counts == {("b", ""): 1}


def test_confusions_table_and_chart(tmp_path):
    counts = reports.confusions([tuple("aab"), tuple("ab")], [tuple("oab"), tuple("ob")])
    frame = reports.confusions_table(counts, str(tmp_path / "c.csv"))
    assert frame.iloc[0].tolist() == ["a", "o", 2]
    assert (tmp_path / "c.csv").read_text().splitlines()[:2] == ["label,prediction,count", "a,o,2"]
    with Image.open(reports.confusions_chart(counts, str(tmp_path / "c.png"))) as im:
        assert im.width > 100 and im.height > 100


def test_gallery_puts_worst_first(tmp_path):
    paths = []
    for i, shade in enumerate((40, 120)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((20, 60), shade, np.uint8)).save(paths[-1])
    out = reports.prediction_gallery(paths, [tuple("12"), tuple("34")], [tuple("12"), tuple("3")],
                                     str(tmp_path / "g.png"), image_height=20, width=300)
    with Image.open(out) as im:
        rgb = np.asarray(im.convert("RGB"))
    # Row 0 shows the wrong sample (shade 120), row 1 the right one (shade 40).
    assert tuple(rgb[8 + 5, 8 + 5]) == (120, 120, 120)
    assert tuple(rgb[8 + 72 + 5, 8 + 5]) == (40, 40, 40)
    assert (rgb[..., 0] > 150)[(rgb[..., 1] < 80)].any()  # red marks the missing symbol


def test_learning_curves_png(tmp_path):
    path = reports.learning_curves({"eval.cer": [(1, 0.9), (2, 0.4)], "train.loss": [(1, 30.0), (2, 12.0)]},
                                   str(tmp_path / "lc.png"))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 500


def test_captured_out_is_bounded():
    text = "".join(f"\rstep {i:3d}" for i in range(100)) + "\n" + "x" * 1_000_000
    out = bounded_captured_out(text)
    assert out.startswith("step  99\n") and len(out) < 230_000 and "characters cut" in out


def test_confusions_chart_of_symbols_its_font_lacks_warns_nothing(tmp_path):
    import warnings
    from collections import Counter

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph ... missing from font(s)" would fail here
        path = reports.confusions_chart(Counter({("⸗", "-"): 3, ("u\u0364", "u"): 2}), str(tmp_path / "c.png"))
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 50
