"""An architecture's own options on the Generate tab: one group of inputs per architecture, built from its
manifest's option schema (``Workstation.architectures``); only the chosen architecture's group shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import gradio as gr


def _slider_or_input(option: Dict[str, Any]) -> gr.components.Component:
    """The input that fits an option of a manifest (see ``Workstation.architectures``)."""
    kind, label, default, info = option["kind"], option["label"], option["default"], option["help"] or None
    if kind in ("float", "int") and option["minimum"] is not None and option["maximum"] is not None:
        step = option["step"] or (1 if kind == "int" else 0.01)
        return gr.Slider(minimum=option["minimum"], maximum=option["maximum"], value=default, step=step, label=label, info=info)
    if kind == "bool":
        return gr.Checkbox(value=bool(default), label=label, info=info)
    if kind == "choice":
        return gr.Dropdown(choices=list(option["choices"]), value=default, label=label, info=info)
    return gr.Textbox(value=str(default), label=label, info=info)


def available_option(option: Dict[str, Any], value: Any, gaps: Mapping[str, str]) -> Any:
    """The update that shows an option as usable, disabled with why, or with its usable choices only."""
    name, help_text = option["name"], option["help"] or ""
    if name in gaps:
        return gr.update(interactive=False, info="Unavailable: %s" % gaps[name])
    if option["kind"] != "choice":
        return gr.update(interactive=True, info=help_text or None)
    missing = {choice: gaps["%s=%s" % (name, choice)] for choice in option["choices"] if "%s=%s" % (name, choice) in gaps}
    choices = [choice for choice in option["choices"] if choice not in missing]
    if not choices:
        return gr.update(interactive=False, info="Unavailable: %s" % "; ".join("%s: %s" % item for item in missing.items()))
    notes = [help_text] + ["%s unavailable: %s" % item for item in missing.items()]
    chosen = value if value in choices else option["default"] if option["default"] in choices else choices[0]
    return gr.update(interactive=True, choices=choices, value=chosen, info=" · ".join(n for n in notes if n) or None)


@dataclass
class OptionControls:
    entries: List[Tuple[str, str, gr.components.Component]]
    """(architecture, option name, input), every architecture's, in one list."""
    specs: List[Dict[str, Any]]
    """The option schema of each entry."""
    groups: Dict[str, gr.Group]
    """Per architecture: the group shown only while it is chosen."""

    @property
    def components(self) -> List[gr.components.Component]:
        return [component for _, _, component in self.entries]

    def chosen(self, architecture: str, values: Sequence[Any]) -> Dict[str, Any]:
        """The chosen architecture's options from every input's value (in ``components`` order)."""
        return {name: value for (owner, name, _), value in zip(self.entries, values, strict=True) if owner == architecture}

    def follow_character(self, architecture: str, saved: Mapping[str, Any], gaps: Mapping[str, str]) -> List[Any]:
        """Updates (in ``components`` order) showing a character's saved defaults and what it and the shared assets
        allow; other architectures' inputs stay as they are."""
        updates = []
        for (owner, name, _), option in zip(self.entries, self.specs, strict=True):
            if owner != architecture:
                updates.append(gr.update())
                continue
            update = available_option(option, saved.get(name, option["default"]), gaps)
            if "value" not in update:
                update["value"] = saved.get(name, option["default"])
            updates.append(update)
        return updates


def build_option_controls(catalogue: Mapping[str, Dict[str, Any]], shown: str) -> OptionControls:
    controls = OptionControls([], [], {})
    for arch in catalogue:
        with gr.Group(visible=arch == shown) as group:
            for option in catalogue[arch]["options"]:
                controls.entries.append((arch, option["name"], _slider_or_input(option)))
                controls.specs.append(option)
        controls.groups[arch] = group
    return controls
