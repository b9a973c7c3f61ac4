"""Why convert_ leaves a module as it is: each check returns a sentence for the report's "reasons",
or None where the module may be replaced, absorbed or folded into.

Hooks. A module with hooks of any kind (forward, forward pre-, backward, state_dict and
load_state_dict ones, with or without kwargs or always_call) stays the object it is and is never
absorbed into a fusion; while global module hooks are registered (torch.nn.modules.module's
register_module_forward_hook and the like) no module is replaced at all. Carrying hooks over to
the module that computes the output instead cannot keep their meaning: a hook receives the module
and may read its type, weight or buffers (a conv with a BN folded in holds other weights), an
absorbed BN's or ReLU's output no longer exists as a tensor, and a fused module has one output
where three modules had three. Keeping the module is always correct and costs only that layer's
fusion. A forward set on the instance (`module.forward = f`) is treated the same way.

Shared memory. Folding a BN writes its conv's weight and bias in place; where those share memory
with another Parameter or buffer of the model (tied weights, `c2.weight = c1.weight`, or storage
shared through `.data`), the other user would change too, so such a BN is left unfolded. Memory
shared with tensors outside the model cannot be seen here.
"""
from __future__ import annotations

from collections import defaultdict

from torch import nn
from torch.nn.modules import module as _module


def hook_names(module: nn.Module) -> list[str]:
    """The module's non-empty hook dicts (e.g. ["_forward_hooks"])."""
    return [name for name, value in vars(module).items()
            if name.endswith("hooks") and isinstance(value, dict) and value]


def global_hook_names() -> list[str]:
    """The non-empty global module hook dicts of torch.nn.modules.module."""
    return [name for name, value in vars(_module).items()
            if name.startswith("_global") and name.endswith("hooks") and isinstance(value, dict) and value]


def kept_as_is(module: nn.Module) -> str | None:
    """Why module must stay the object it is (hooks, a forward of its own on the instance), or None."""
    names = hook_names(module)
    if names:
        return f"has hooks ({', '.join(names)}): replacing or absorbing it would drop them"
    if "forward" in vars(module):
        return "has a forward set on the instance"
    return None


def conv_reason(conv: nn.Conv2d) -> str | None:
    """Why an nn.Conv2d (or subclass) is not converted, or None where it can be."""
    if type(conv) is not nn.Conv2d:
        return (f"{type(conv).__name__} is a subclass of nn.Conv2d (a parametrized conv, or one with its "
                f"own forward): left as it is")
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}: zeroskip pads with zeros only"
    why = kept_as_is(conv)
    if why is not None:
        return why
    for name in ("weight", "bias"):
        value = getattr(conv, name)
        if not isinstance(value, nn.Parameter) and not (name == "bias" and value is None):
            return f"its {name} is a {type(value).__name__}, not an nn.Parameter"
    return None


def _span_bytes(t) -> tuple[int, int]:
    """[first, end) bytes of t's storage that t can read."""
    first = t.storage_offset() * t.element_size()
    return first, first + (1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))) * t.element_size()


class Memory:
    """Where each Parameter and buffer of a model lives, to tell whether two of them overlap."""

    def __init__(self, model: nn.Module):
        self.slots = defaultdict(list)  # (device, storage address) -> [(first, end, module, slot, name)]
        for prefix, m in model.named_modules():
            for slot, t in [*m._parameters.items(), *m._buffers.items()]:
                if t is None or t.numel() == 0:
                    continue
                try:
                    where = (t.device, t.untyped_storage().data_ptr())
                except (RuntimeError, NotImplementedError):  # tensors without storage
                    continue
                self.slots[where].append((*_span_bytes(t), m, slot, f"{prefix}.{slot}" if prefix else slot))

    def shared(self, module: nn.Module, slot: str) -> str | None:
        """The name of another Parameter or buffer overlapping module.<slot>, or None."""
        t = getattr(module, slot)
        if t is None or t.numel() == 0:
            return None
        first, end = _span_bytes(t)
        for other_first, other_end, other, other_slot, name in self.slots[(t.device, t.untyped_storage().data_ptr())]:
            if (other is not module or other_slot != slot) and other_first < end and first < other_end:
                return name
        return None
