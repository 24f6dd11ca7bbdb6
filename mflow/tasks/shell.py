"""The `bash` and `command` task types.

`bash` runs `bash -c command`. Like make, it skips the shell when the command is plain words
with nothing a shell would interpret (no quotes, variables, globs, redirections, builtins...):
the result is identical and a fork+exec of bash is saved on every task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mflow.tasks.base import SubprocessTaskType

if TYPE_CHECKING:
    from mflow.config import TaskSpec
    from mflow.tasks.base import TaskContext

# Characters that make bash do something other than split on blanks and exec.
_SHELL_CHARS = frozenset("#;&|<>()[]{}*?$`'\"\\~=!%\n")
# Bash keywords and builtins: as a first word they mean something else than an executable.
_BASH_WORDS = frozenset(
    """! [[ ]] case coproc do done elif else esac fi for function if in select then time until
    while alias bg bind break builtin caller cd command compgen complete compopt continue
    declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history
    jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return set
    shift shopt source suspend test times trap true type typeset ulimit umask unalias unset
    wait""".split()
)
# Builtins whose executable twin behaves the same when given no argument.
_SAME_WITHOUT_ARGS = frozenset({"true", "false"})


def direct_argv(command: str) -> list[str] | None:
    """The argv to exec `command` without a shell, or None when it needs bash."""
    if not _SHELL_CHARS.isdisjoint(command):
        return None
    words = command.split()
    if not words:
        return None
    if words[0] in _BASH_WORDS and not (len(words) == 1 and words[0] in _SAME_WITHOUT_ARGS):
        return None
    return words


class BashTask(SubprocessTaskType):
    name = "bash"

    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]:
        command = spec.fields["command"]
        return direct_argv(command) or ["bash", "-c", command]


class CommandTask(SubprocessTaskType):
    name = "command"

    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]:
        return [spec.fields["command"], *(str(a) for a in spec.fields.get("args", ()))]
