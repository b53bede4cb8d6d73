"""Split rules: which split (train / val / test, or skip) an input belongs to.

A rule is an ordered list of (pattern, split); the first pattern matching an
input's name wins. Names are paths relative to the input root, with `/`
separators (e.g. `ACCAD/Female1General_c3d/A1 - Stand_poses.npz`,
`train/dataset-2_walk_active_001.bvh.gz`). Patterns are shell globs matched
case-sensitively against the whole name (`*` also crosses `/`), or regular
expressions searched in the name when written `re:<regex>`. The split `skip`
leaves matching inputs out of the dataset.

Written (`--split_rule`) as
  - inline: `pattern=split,pattern=split,...`, e.g.
    `*_normal_*=val,*_youthful_*=test,*=train`;
  - JSON (a string, or a path to a `.json` file): `{"pattern": "split", ...}`
    (in order) or `[["pattern", "split"], ...]`;
  - a path to a text file with one `pattern=split` per line (`#` comments).

Default rules: EgoAllo's AMASS subsets (DESIGN.md §3.2) for AMASS and
EgoAllo's HDF5; a preset's own rule for BVH (Bandai-Namco: by style).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from collections.abc import Sequence

SPLITS = ("train", "val", "test")
SKIP = "skip"

# EgoAllo's AMASS subsets (`0a_preprocess_training_data.py`). EgoAllo's own
# list writes "DFaust_67" "EKUT" without a comma (so Python joins them and
# neither subset is read); DESIGN.md §3.2 lists them separately, as here.
AMASS_SUBSETS = {
    "train": ("ACCAD", "BMLhandball", "BMLmovi", "BioMotionLab_NTroje", "CMU",
              "DFaust_67", "DanceDB", "EKUT", "Eyes_Japan_Dataset", "KIT",
              "MPI_Limits", "TCD_handMocap", "TotalCapture"),
    "val": ("HumanEva", "MPI_HDM05", "MPI_mosh", "SFU"),
    "test": ("Transitions_mocap", "SSM_synced"),
}
# Sequences EgoAllo (after HuMoR's cleanup script) leaves out.
AMASS_EXCLUDED = ("BioMotionLab_NTroje/*treadmill*",
                  "BioMotionLab_NTroje/*normal_*",
                  "MPI_HDM05/*dg/HDM_dg_07-01*")


class SplitRuleError(ValueError):
  """A malformed split rule, or an input no rule matches."""


@dataclasses.dataclass(frozen=True)
class SplitRule:
  """Ordered (pattern, split) pairs; see the module docstring.

  Attributes:
    rules: the pairs, first match wins.
    origin: where the rule came from (for messages).
  """

  rules: tuple[tuple[str, str], ...]
  origin: str = "--split_rule"

  def split_of(self, name: str) -> str:
    """The split of input `name` ("train", "val", "test" or "skip").

    Raises:
      SplitRuleError: no pattern matches `name`.
    """
    name = name.lstrip("/")
    for pattern, split in self.rules:
      if pattern.startswith("re:"):
        if re.search(pattern[3:], name):
          return split
      elif fnmatch.fnmatchcase(name, pattern):
        return split
    raise SplitRuleError(
        f"{name}: no split rule matches (rules from {self.origin}: "
        f"{', '.join(f'{p}={s}' for p, s in self.rules)}); add a catch-all "
        "such as '*=train'")


def _checked(pairs: Sequence, origin: str) -> SplitRule:
  rules = []
  for pair in pairs:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and
            all(isinstance(p, str) for p in pair)):
      raise SplitRuleError(f"{origin}: expected pattern=split pairs, got "
                           f"{pair!r}")
    pattern, split = pair[0].strip(), pair[1].strip()
    if not pattern:
      raise SplitRuleError(f"{origin}: empty pattern in {pair!r}")
    if split not in SPLITS + (SKIP,):
      raise SplitRuleError(f"{origin}: split {split!r} for pattern "
                           f"{pattern!r} must be one of "
                           f"{list(SPLITS) + [SKIP]}")
    if pattern.startswith("re:"):
      try:
        re.compile(pattern[3:])
      except re.error as e:
        raise SplitRuleError(f"{origin}: bad regular expression "
                             f"{pattern[3:]!r} ({e})") from e
    rules.append((pattern, split))
  if not rules:
    raise SplitRuleError(f"{origin}: no rules")
  return SplitRule(tuple(rules), origin)


def _from_json(content, origin: str) -> SplitRule:
  if isinstance(content, dict):
    return _checked(list(content.items()), origin)
  if isinstance(content, list):
    return _checked(content, origin)
  raise SplitRuleError(f"{origin}: JSON must be an object or a list of "
                       "[pattern, split] pairs")


def _from_lines(lines: Sequence[str], origin: str) -> SplitRule:
  pairs = []
  for line in lines:
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    pattern, sep, split = line.rpartition("=")
    if not sep:
      raise SplitRuleError(f"{origin}: expected 'pattern=split', got "
                           f"{line!r}")
    pairs.append((pattern, split))
  return _checked(pairs, origin)


def parse_split_rule(text: str) -> SplitRule:
  """Parses a `--split_rule` value (inline, JSON, or a file of either).

  Args:
    text: see the module docstring.

  Returns:
    The rule.

  Raises:
    SplitRuleError: naming the problem.
  """
  text = text.strip()
  if os.path.isfile(text):
    try:
      content = open(text, encoding="utf-8").read()
    except OSError as e:
      raise SplitRuleError(f"--split_rule: cannot read {text} ({e})") from e
    if text.endswith(".json"):
      try:
        return _from_json(json.loads(content), text)
      except json.JSONDecodeError as e:
        raise SplitRuleError(f"{text}: bad JSON ({e})") from e
    return _from_lines(content.splitlines(), text)
  if text[:1] in "[{":
    try:
      return _from_json(json.loads(text), "--split_rule")
    except json.JSONDecodeError as e:
      raise SplitRuleError(f"--split_rule: bad JSON ({e})") from e
  return _from_lines(text.split(","), "--split_rule")


def amass_default_rule() -> SplitRule:
  """EgoAllo's AMASS split by subset folder; other subsets are skipped."""
  pairs = [(p, SKIP) for p in AMASS_EXCLUDED]
  for split, subsets in AMASS_SUBSETS.items():
    pairs += [(f"{subset}/*", split) for subset in subsets]
  pairs.append(("*", SKIP))
  return SplitRule(tuple(pairs), "EgoAllo's AMASS subsets (default)")


def rule_or_default(text: str | None, default: SplitRule | str | None,
                    ) -> SplitRule:
  """`--split_rule` if given, else the default (a rule or rule text)."""
  if text:
    return parse_split_rule(text)
  if isinstance(default, SplitRule):
    return default
  if default:
    return dataclasses.replace(parse_split_rule(default),
                               origin="the default rule")
  return SplitRule((("*", "train"),), "the default rule")
