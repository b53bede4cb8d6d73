"""What every command-line entry point shares: a quiet console, one-line
errors.

`run(main)` replaces `absl.app.run(main)`:
  * other libraries' chatter is filtered at its source (`quiet_libraries`):
    JAX's TPU probe on machines without one, TFDS's and Orbax's info lines,
    Orbax's read-only-restore warnings. Their other warnings and errors
    stay; `--verbosity=1` brings everything back;
  * a bad flag or option prints ONE line `error: …` on stderr and exits with
    status 2 (usage): unknown `--config` variant, misspelt `--config.` key,
    unparsable value, or a `ValueError` whose message names the option as
    `config.…` (the project's convention for option errors);
  * bad input (any other `ValueError`, e.g. `BvhError` / `AriaError`, a
    missing file, a non-finite training step) prints ONE line and exits with
    status 1 (data);
  * anything else is a bug and keeps its traceback. `--verbosity=1` or
    `MOTIONGRPO_TRACEBACK=1` shows the traceback of the errors above too.

The library keeps its exception types; only entry points translate them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn

from absl import app
from absl import flags
from absl import logging as absl_logging

from motiongrpo_jax import configs
from motiongrpo_jax.train import loop

# Set to 1 to see the traceback behind an `error:` line.
TRACEBACK_ENV = "MOTIONGRPO_TRACEBACK"
USAGE_EXIT, DATA_EXIT = 2, 1
# Orbax notices on every read-only restore; none asks the user to act.
_ORBAX_NOTICES = ("read_only=True", "Given directory is read only",
                  "Metadata file does not exist")


class _LibraryChatter(logging.Filter):
  """Drops TFDS's and Orbax's info lines and Orbax's read-only notices."""

  def filter(self, record: logging.LogRecord) -> bool:
    path = record.pathname.replace("\\", "/")
    if not any(p in path for p in ("/tensorflow_datasets/", "/orbax/")):
      return True
    if record.levelno < logging.WARNING:
      return False
    return record.levelno >= logging.ERROR or not any(
        n in record.getMessage() for n in _ORBAX_NOTICES)


def quiet_libraries() -> None:
  """Filters library chatter unless absl's `--verbosity` is ≥ 1."""
  if absl_logging.get_verbosity() >= 1:
    return
  # "Unable to initialize backend 'tpu'" is logged at INFO on every machine
  # without a TPU; the module's warnings (e.g. a GPU without CUDA) stay.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryChatter) for f in handler.filters):
    handler.addFilter(_LibraryChatter())


def _one_line(message: str) -> str:
  return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _flag_error_message(error: BaseException) -> str:
  """The useful part of a flag-parsing error (config_flags embeds the config
  file's whole traceback in the message: keep its last line, the error)."""
  if isinstance(error, KeyError) and error.args:  # A misspelt --config key.
    return f"--config: unknown field {_one_line(str(error.args[0]))}"
  text = str(error)
  if "Traceback (most recent call last)" in text:
    # "ExceptionType: message", the message naming the config file.
    last = [l for l in text.splitlines() if l.strip()][-1]
    return last.split(": ", 1)[-1]
  return _one_line(text)


def _traceback_requested() -> bool:
  return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def _show_tracebacks() -> bool:
  return _traceback_requested() or absl_logging.get_verbosity() >= 1


def _fail(message: str, status: int) -> NoReturn:
  print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(status)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(configs.resolve_flag(argv))
  except (flags.Error, KeyError, ValueError) as error:
    if _traceback_requested():  # --verbosity is not parsed yet.
      raise
    _fail(_flag_error_message(error), USAGE_EXIT)


def exit_status(error: BaseException) -> int | None:
  """USAGE_EXIT or DATA_EXIT for an error an entry point reports in one
  line; None for a bug (keep the traceback)."""
  if isinstance(error, (app.UsageError, flags.Error)):
    return USAGE_EXIT
  if isinstance(error, ValueError):
    return USAGE_EXIT if str(error).startswith("config") else DATA_EXIT
  if isinstance(error, (OSError, loop.NonFiniteError)):
    return DATA_EXIT
  return None


def run(main: Callable[[list[str]], object]) -> None:
  """`absl.app.run(main)` with a quiet console and one-line errors."""

  def wrapped(argv: list[str]) -> None:
    quiet_libraries()
    try:
      main(argv)
    except Exception as error:  # pylint: disable=broad-except
      status = exit_status(error)
      if status is None or _show_tracebacks():
        raise
      _fail(str(error) or type(error).__name__, status)

  app.run(wrapped, flags_parser=_parse_flags)
