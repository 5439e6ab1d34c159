"""The measured part of the chest CT landmark card: held-out precision tables, offsets, cross-family figures."""
from __future__ import annotations

from typing import Any, Mapping

from models.chest_ct_landmarks.findings import LANDMARKS
from models.chest_ct_landmarks.metrics import HISTOGRAM_BINS

__all__ = [
    "LANDMARK_NAMES", "RESEARCH_PRECISION", "cross_family_limits", "evaluation_section", "precision_table",
    "reverse_lines", "seed_range_text",
]

LANDMARK_NAMES = {"apex": "lung apex", "carina": "tracheal bifurcation (carina)", "diaphragm": "upper diaphragm"}
RESEARCH_PRECISION = {
    "apex": "95.1 % (EfficientNet-B4)",
    "carina": "95.6 % (DenseNet-169)",
    "diaphragm": "93.7 % (EfficientNet-B4)",
}


def evaluation_section(meta: Mapping[str, Any]) -> list[str]:
    """The held-out evaluation: precision per family, offsets, cross-family limits."""
    t = meta.get("trained_on", {})
    test = (meta.get("metrics") or {}).get("test")
    lines = [
        "## Held-out evaluation (measured, onnxruntime CPU)",
        "",
    ]
    families = dict((meta.get("metrics") or {}).get("families") or {})
    trained = str(t.get("family", "a"))
    if test and not families:
        families = {trained: test}
    if families:
        lines += [
            "Two independently written phantom families: **A** (`models.phantoms.chest_ct`: ellipses,",
            "paraboloid apices and domes, capsule tubes) and **B** (`models.phantoms.chest_ct_b`, written from",
            "the research's anatomy description alone: superellipse body, lungs as the cavity minus the",
            "mediastinum, power-law apices, Gaussian domes, sphere-swept airways, vessels and ribs, arms,",
            "table pads, IV contrast, Fourier-domain MTF and ramp-shaped noise). Both label the landmarks",
            "by the definitions above. Held-out seeds are never trained on; the family the weights were",
            "not trained on is the honest, cross-family figure.",
            "A pick counts for the **1-Up-Down precision** when it lies on the truth slice or one slice",
            "above or below (the research's criterion); each series gives one pick per landmark.",
            "",
            *precision_table(families, trained),
        ]
        lines.append("| phantoms, seeds | " + " | ".join(
            f"{families[f]['n_series']}, {seed_range_text(families[f].get('seed_range'))}" for f in families) + " |")
        for f, rep_ in families.items():
            lines += [
                "",
                f"### Family {f.upper()} ({'trained on' if f in trained.split('+') else 'other family'}):"
                f" {rep_['n_series']} phantoms, seeds {seed_range_text(rep_.get('seed_range'))}",
                "",
                "| landmark | 1-Up-Down precision | exact | within ±2 | mean abs offset (slices) | research (best model) |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for n in LANDMARKS:
                m = rep_["per_landmark"][n]
                lines.append(
                    f"| {LANDMARK_NAMES[n]} | {m['one_up_down_precision']:.3f} | {m['exact']:.3f} | {m['within_2']:.3f} "
                    f"| {m['mean_abs_offset']:.2f} | {RESEARCH_PRECISION[n]} |"
                )
            lines += [
                "",
                "Pick offsets (pick − truth, slices; + is superior), as in the research's Figure 5:",
                "",
                "| landmark | " + " | ".join(HISTOGRAM_BINS) + " |",
                "| --- |" + " --- |" * len(HISTOGRAM_BINS),
            ]
            for n in LANDMARKS:
                h = rep_["per_landmark"][n]["histogram"]
                lines.append(f"| {LANDMARK_NAMES[n]} | " + " | ".join(str(h[b]) for b in HISTOGRAM_BINS) + " |")
        lines += reverse_lines(meta, trained)
        lines += [
            "",
            "The research's figures are on 72 real patients with interstitial pneumonia; these are on",
            "phantoms, so the two cannot be compared. `ainode models eval chest-ct-landmarks` re-measures",
            "both families and prints the cross-family table.",
            "`tests/test_chest_ct_landmarks_model.py` re-measures the committed weights on other held-out",
            "seeds of both families and requires the precision stored here minus a stated margin.",
        ]
    else:
        lines.append("No held-out evaluation was run for these weights.")
    return lines


def precision_table(families: Mapping[str, Any], trained: str) -> list[str]:
    """Markdown rows: 1-Up-Down per landmark (rows) and family (columns)."""
    lines = [
        "| landmark | " + " | ".join(
            f"family {f.upper()} ({'trained on' if f in trained.split('+') else 'other family'}) 1-Up-Down" for f in families) + " |",
        "| --- |" + " --- |" * len(families),
    ]
    for n in LANDMARKS:
        lines.append(f"| {LANDMARK_NAMES[n]} | " + " | ".join(
            f"{families[f]['per_landmark'][n]['one_up_down_precision']:.3f}" for f in families) + " |")
    return lines


def reverse_lines(meta: Mapping[str, Any], trained: str) -> list[str]:
    """The other direction: the same configuration trained on the other family (``metrics.reverse``)."""
    rev = (meta.get("metrics") or {}).get("reverse")
    if not rev:
        return []
    fam = str(rev["family"])
    fams = rev["families"]
    lines = [
        "",
        f"### The other direction: the same configuration trained on family {fam.upper()} (not shipped)",
        "",
        f"Trained with the same options except `--family {fam} --phantoms {rev.get('phantoms', '?')}` on family {fam.upper()}"
        f" (seeds {seed_range_text(rev.get('seeds'))}, version `{rev.get('version', '?')}`), evaluated on the same",
        "held-out seeds. These weights are not shipped; they show that the configuration, not one",
        "family, carries the figures.",
        "",
        *precision_table(fams, fam),
    ]
    lines.append("| pick offsets on the other family (<-2 / -2 / -1 / 0 / +1 / +2 / >+2) | " + " | ".join(
        "; ".join(f"{n} " + "/".join(str(fams[f]['per_landmark'][n]['histogram'][b]) for b in HISTOGRAM_BINS)
                  for n in LANDMARKS) if f != fam else "" for f in fams) + " |")
    return lines


def cross_family_limits(families: Mapping[str, Any], trained: str) -> list[str]:
    """Limits lines that state the cross-family figures against the 0.90 target."""
    other = [f for f in families if f not in trained.split("+")]
    if not other:
        figs = "; ".join(f"family {f.upper()} " + ", ".join(
            f"{n} {families[f]['per_landmark'][n]['one_up_down_precision']:.2f}" for n in LANDMARKS) for f in families)
        return [f"- Trained on every phantom family evaluated; no cross-family figure (1-Up-Down {figs})."]
    out = []
    for f in other:
        per = families[f]["per_landmark"]
        figs = ", ".join(f"{n} {per[n]['one_up_down_precision']:.2f}" for n in LANDMARKS)
        below = [n for n in LANDMARKS if per[n]["one_up_down_precision"] < 0.90]
        out += [
            f"- Cross-family: trained on family {trained.upper()}, tested on family {f.upper()}",
            f"  (seeds {seed_range_text(families[f].get('seed_range'))}): 1-Up-Down {figs}.",
            ("  Below the 0.90 target of issue 15 for " + ", ".join(below) + ":\n  the weights have learned"
             " their phantom family's style, not only the landmark." if below else
             "  At or above the 0.90 target of issue 15 for every landmark."),
        ]
    return out


def seed_range_text(r: Any) -> str:
    if not r:
        return "-"
    return f"{int(r[0]):,}..{int(r[-1]):,}"
