"""Tests for config_sections.py: options dataclasses as the one source of a
config section's settings."""

import dataclasses

import pytest

from motiongrpo_jax import config_sections
from motiongrpo_jax.configs import grpo as grpo_config
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.grpo import rewards
from motiongrpo_jax.grpo import update


@dataclasses.dataclass(frozen=True)
class _Inner:
  depth: int = 1


@dataclasses.dataclass(frozen=True)
class _Options:
  width: int = 2
  name: str = "a"
  kinds: tuple[str, ...] = ("x", "y")
  fps: float = dataclasses.field(default=30.0, metadata={"setting": False})
  inner: _Inner = _Inner()

  def validate(self):
    if self.width < 1:
      raise ValueError(f"options.width={self.width}: expected >= 1")
    if self.name == "bad":
      raise ValueError("no such name")
    return self


def test_section_holds_the_settings_and_round_trips():
  section = config_sections.from_dataclass(_Options)
  # Code-set fields (fps) and nested options (inner) are not settings.
  assert section.to_dict() == {"width": 2, "name": "a", "kinds": ("x", "y")}
  section.width = 5
  options = config_sections.to_dataclass(_Options, section, "options",
                                         fps=25.0, inner=_Inner(3))
  assert options == _Options(width=5, fps=25.0, inner=_Inner(3))
  # An instance gives its own values.
  assert config_sections.from_dataclass(_Options(width=7)).width == 7


def test_bad_sections_name_the_option():
  section = config_sections.from_dataclass(_Options)
  section.width = 0
  with pytest.raises(ValueError, match=r"^config\.options\.width=0: "):
    config_sections.to_dataclass(_Options, section, "options")
  # The same class under another section: the message names that section.
  with pytest.raises(ValueError, match=r"^config\.other\.width=0: "):
    config_sections.to_dataclass(_Options, section, "other")
  section.width, section.name = 2, "bad"
  with pytest.raises(ValueError, match=r"^config\.options: no such name"):
    config_sections.to_dataclass(_Options, section, "options")
  section = config_sections.from_dataclass(_Options)
  section.unlock()
  section.widht = 3
  with pytest.raises(ValueError, match=r"config\.options: unknown key "
                     r"\['widht'\]"):
    config_sections.to_dataclass(_Options, section, "options")


def test_grpo_config_is_the_libraries_options():
  # Every setting of GRPO's options dataclasses is in the config with the
  # dataclass's default (one declaration), and the config builds them back.
  config = grpo_config.get_config("demo")
  static = update.from_config(config)
  assert static.reward == rewards.RewardConfig(fps=config.data.fps)
  assert static.sampler == update.ROLLOUT_SAMPLER
  assert dataclasses.replace(static, group=update.UpdateConfig().group) == (
      dataclasses.replace(update.UpdateConfig(), reward=static.reward))
  assert static.group.noise.fps == config.data.fps
  # A changed setting reaches its dataclass.
  config.sampler.num_steps = 28
  config.reward.weight_skate = 0.5
  static = update.from_config(config)
  assert static.sampler.num_steps == 28 and static.reward.weight_skate == 0.5
  assert static.sampler.return_means is False
  assert sampler_lib.SamplerConfig().return_means is True
