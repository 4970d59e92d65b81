"""Sanity checks of a robustness evaluation, so gradient masking cannot pass for robustness.

Athalye, Carlini & Wagner 2018 (Sec. 3.1, the signs of obfuscated gradients), Carlini et al.
2019 ("On evaluating adversarial robustness", Sec. 5) and AutoAttack's checklist (Croce &
Hein 2020) list what a sound white-box evaluation must show; here each is a pure function on
attack success rates (fractions of the same attacked patches):

- iterative attacks are at least as strong as single-step ones (FGSM);
- success does not decrease as epsilon grows;
- an unbounded epsilon (255: any image is reachable) reaches ~100%;
- a black-box (gradient-free) or transfer attack is not stronger than the white-box one.

``slack`` is how far a rate may fall on the wrong side before a check fails: the random
starts and random searches make rates on n patches noisy by a few 1/n.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from camtrace.errors import CamtraceError


@dataclass(frozen=True)
class Check:
    """The verdict of one sanity check and the numbers behind it, in one sentence."""

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, str | bool]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """The success rates of one detector that the checks compare (attacks at the matrix's
    eps unless said otherwise)."""

    single_step: float
    iterative: Mapping[str, float]
    eps: Sequence[float]
    by_eps: Sequence[float]
    unbounded_eps: float
    unbounded: float
    white_box: Mapping[str, float]
    black_box: Mapping[str, float]


def _rates(rates: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in rates.items())


def iterative_beats_single_step(
    single_step: float, iterative: Mapping[str, float], slack: float
) -> Check:
    """Every iterative attack succeeds at least as often as FGSM (Carlini et al. 2019,
    Sec. 5.2: more iterations never hurt a sound attack)."""
    weak = {k: v for k, v in iterative.items() if v < single_step - slack}
    return Check(
        "iterative >= single-step",
        not weak,
        f"FGSM {100 * single_step:.1f}%; iterative: {_rates(iterative)}"
        + (f"; weaker: {', '.join(weak)}" if weak else ""),
    )


def non_decreasing_in_eps(eps: Sequence[float], rates: Sequence[float], slack: float) -> Check:
    """Success does not fall as epsilon grows (Athalye et al. 2018, Sec. 3.1)."""
    if len(eps) != len(rates) or list(eps) != sorted(eps):
        raise CamtraceError("sanity: give one rate per epsilon, epsilons in increasing order")
    drops = [
        f"{eps[i]:g} -> {eps[i + 1]:g}"
        for i in range(len(rates) - 1)
        if rates[i + 1] < rates[i] - slack
    ]
    curve = ", ".join(f"eps {e:g}: {100 * r:.1f}%" for e, r in zip(eps, rates, strict=True))
    return Check(
        "success non-decreasing in eps",
        not drops,
        curve + (f"; falls at {', '.join(drops)}" if drops else ""),
    )


def unbounded_reaches_all(eps: float, rate: float, slack: float) -> Check:
    """With an unbounded epsilon every image is reachable, so success must be ~100%
    (Athalye et al. 2018, Sec. 3.1; Carlini et al. 2019, Sec. 5.2)."""
    return Check(
        "unbounded eps reaches ~100%",
        rate >= 1 - slack,
        f"eps {eps:g}: {100 * rate:.1f}% (needs >= {100 * (1 - slack):.1f}%)",
    )


def black_box_below_white_box(
    white_box: Mapping[str, float], black_box: Mapping[str, float], slack: float
) -> Check:
    """No black-box (gradient-free) or transfer attack beats the best white-box one: if it
    does, the gradients the white-box attacks follow are masked (Athalye et al. 2018)."""
    best = max(white_box.values())
    stronger = {k: v for k, v in black_box.items() if v > best + slack}
    return Check(
        "black-box / transfer <= white-box",
        not stronger,
        f"best white-box {100 * best:.1f}%; black-box / transfer: {_rates(black_box)}"
        + (f"; stronger: {', '.join(stronger)}" if stronger else ""),
    )


def sanity_checks(evidence: Evidence, slack: float) -> list[Check]:
    """The four checks on one detector's evidence."""
    e = evidence
    return [
        iterative_beats_single_step(e.single_step, e.iterative, slack),
        non_decreasing_in_eps(e.eps, e.by_eps, slack),
        unbounded_reaches_all(e.unbounded_eps, e.unbounded, slack),
        black_box_below_white_box(e.white_box, e.black_box, slack),
    ]
