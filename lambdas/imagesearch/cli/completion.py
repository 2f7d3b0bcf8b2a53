"""Shell completion scripts generated from the argparse parser (one source of truth:
a new command or option completes without editing a script)."""

from __future__ import annotations

import argparse
import shlex

# Arguments whose values are files or directories (completed by the shell's own rules).
_PATH_DESTS = frozenset({"paths", "image", "dropbox", "state_dir"})


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and action.help != argparse.SUPPRESS
        }
    )


def _value_words(parser: argparse.ArgumentParser) -> tuple[dict[str, list[str]], list[str]]:
    """Options with fixed choices -> the choices; options that take a path."""
    choices: dict[str, list[str]] = {}
    paths: list[str] = []
    for action in parser._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if not long:
            continue
        if action.choices:
            choices[long[0]] = [str(c) for c in action.choices]
        elif action.dest in _PATH_DESTS:
            paths.append(long[0])
    return choices, paths


def bash_script(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    commands = _subparsers(parser)
    cases = []
    for name, child in commands.items():
        choices, paths = _value_words(child)
        positional = [a for a in child._actions if not a.option_strings and a.dest != "help"]
        value_cases = "".join(
            f"            {option}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(words))}"
            ' -- "$cur")); return;;\n'
            for option, words in choices.items()
        )
        if paths:
            value_cases += (
                f'            {"|".join(paths)}) COMPREPLY=($(compgen -f -- "$cur")); return;;\n'
            )
        fallback = 'COMPREPLY=($(compgen -W "$opts" -- "$cur"))'
        if any(a.dest in _PATH_DESTS for a in positional):
            fallback = 'COMPREPLY=($(compgen -W "$opts" -f -- "$cur"))'
        elif any(a.choices for a in positional):
            words = " ".join(str(c) for a in positional if a.choices for c in a.choices)
            fallback = f'COMPREPLY=($(compgen -W "$opts {words}" -- "$cur"))'
        cases.append(
            f"        {name})\n"
            f"            opts={shlex.quote(' '.join(_options(child)))}\n"
            f'            case "$prev" in\n{value_cases}            esac\n'
            f"            {fallback};;\n"
        )
    function = f"_{prog.replace('-', '_')}_complete"
    top_words = shlex.quote(" ".join([*commands, *_options(parser)]))
    return (
        f'# bash completion for {prog}: eval "$({prog} completion bash)"\n'
        f"{function}() {{\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"\n'
        '    local command="" opts word\n'
        '    for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do\n'
        f'        case "$word" in {"|".join(commands)}) command="$word"; break;; esac\n'
        "    done\n"
        '    case "$command" in\n' + "".join(cases) + "        *)\n"
        f'            COMPREPLY=($(compgen -W {top_words} -- "$cur"));;\n'
        "    esac\n"
        "}\n"
        f"complete -o default -F {function} {prog}\n"
    )


def zsh_script(parser: argparse.ArgumentParser) -> str:
    # zsh runs the bash script through bashcompinit: one generator, both shells.
    return (
        f"#compdef {parser.prog}\n"
        f'# zsh completion for {parser.prog}: eval "$({parser.prog} completion zsh)" in ~/.zshrc\n'
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)
    )


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    if shell == "bash":
        return bash_script(parser)
    if shell == "zsh":
        return zsh_script(parser)
    raise ValueError(f"no completion for {shell!r}")
