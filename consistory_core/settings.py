"""Typed settings of the method, frozen, with a JSON form that carries a format version.

Every setting a node takes travels as one of these values: the sharing settings (§4.1,
§4.2 dropout, §4.4 anchors) with the mask settings inside, the query-blend settings (§4.2)
and the feature-injection settings (§4.3). Anchor banks store them (bank_file), so their
JSON form is a file format: ``to_json`` writes the current version, ``from_json`` reads
it and every older one, and refuses a newer one with a message naming both versions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

SETTINGS_VERSION = 1


class SettingsError(ValueError):
    """Settings that cannot be read: a newer format, or a value of the wrong kind."""


def check_version(kind: str, version: int, newest: int) -> None:
    if version > newest:
        raise SettingsError(f"these {kind} are format version {version}; this version of comfyui-consistory "
                            f"reads format versions up to {newest}: update the pack")


class _JSONSettings:
    """to_json / from_json for a flat frozen dataclass of numbers and strings."""
    KIND = "settings"

    def to_json(self) -> dict:
        return {"version": SETTINGS_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict):
        check_version(cls.KIND, int(data.get("version", 1)), SETTINGS_VERSION)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class MaskSettings(_JSONSettings):
    """How subject masks are made from cross-attention (§4.1): the mean of the last
    ``window`` steps' maps, from the layers at ``resolution``, Otsu threshold x ``threshold_scale``."""
    window: int = 20
    resolution: str = "low (latent/4)"
    threshold_scale: float = 1.0
    KIND = "mask settings"

    RESOLUTIONS = {"low (latent/4)": (4,), "high (latent/2)": (2,), "low + high": (2, 4)}

    @property
    def downscales(self) -> tuple:
        """Latent-to-grid factors of the layers that record masks."""
        return self.RESOLUTIONS[self.resolution]


# A DiT's shared keys (Flux, RoPE): moved beside the image's own positions (AlignedGen's
# ShiftPE, so they do not copy the other image's layout), or kept at their own.
DIT_POSITIONS = ("shifted (ShiftPE)", "as sampled")

BLOCK_GROUPS = {
    "output (paper)": ("output",),
    "middle + output": ("middle", "output"),
    "input + middle + output": ("input", "middle", "output"),
}


@dataclass(frozen=True)
class SharingSettings:
    """Subject-driven shared self-attention (§4.1) with dropout (§4.2) and anchors (§4.4).

    dropout: chance a subject patch of another image is hidden at a step; dropout_seed: its
    generator's seed; anchors: 0 = every image shares with every other, k = the first k
    share with each other and the rest see only them; start/end_percent: where in the
    schedule sharing is on; blocks: a key of BLOCK_GROUPS; masks: how masks are made;
    dit_positions: on a DiT, where the shared keys sit (one of DIT_POSITIONS).
    """
    dropout: float = 0.5
    dropout_seed: int = 0
    anchors: int = 0
    start_percent: float = 0.0
    end_percent: float = 1.0
    blocks: str = "output (paper)"
    masks: MaskSettings = field(default_factory=MaskSettings)
    dit_positions: str = "shifted (ShiftPE)"
    KIND = "sharing settings"

    def __post_init__(self):
        if self.start_percent > self.end_percent:
            raise SettingsError(f"start_percent {self.start_percent} is after end_percent {self.end_percent}")
        if self.blocks not in BLOCK_GROUPS:
            raise SettingsError(f"blocks {self.blocks!r} is not one of {list(BLOCK_GROUPS)}")
        if self.dit_positions not in DIT_POSITIONS:
            raise SettingsError(f"dit_positions {self.dit_positions!r} is not one of {list(DIT_POSITIONS)}")
        if self.masks.resolution not in MaskSettings.RESOLUTIONS:
            raise SettingsError(f"mask resolution {self.masks.resolution!r} is not one of "
                                f"{list(MaskSettings.RESOLUTIONS)}")

    @property
    def block_groups(self) -> tuple:
        return BLOCK_GROUPS[self.blocks]

    def to_json(self) -> dict:
        out = {"version": SETTINGS_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}
        out["masks"] = self.masks.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> "SharingSettings":
        check_version(cls.KIND, int(data.get("version", 1)), SETTINGS_VERSION)
        names = {f.name for f in fields(cls)} - {"masks"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   masks=MaskSettings.from_json(data.get("masks", {})))


@dataclass(frozen=True)
class BlendSettings(_JSONSettings):
    """Vanilla-query blending (§4.2): q = s*q_vanilla + (1-s)*q, s going linearly from
    start_strength at the schedule's start to end_strength at end_percent, then off. The
    reference's values: 0.9 to 0.81836735 (its linspace(0.9, 0.1, 50) at steps 0-5 of 50)."""
    start_strength: float = 0.9
    end_strength: float = 0.81836735
    end_percent: float = 0.1
    KIND = "query blend settings"


@dataclass(frozen=True)
class InjectionSettings(_JSONSettings):
    """DIFT feature injection (§4.3): between start and end percent a target subject
    patch's attention output moves ``alpha`` of the way to its match's. One-pass mode reads
    the features at ``dift_timestep`` (of 1000) after re-noising with ``dift_noise_seed``."""
    alpha: float = 0.8
    start_percent: float = 0.1
    end_percent: float = 0.33
    dift_timestep: int = 261
    dift_noise_seed: int = 0
    KIND = "feature injection settings"

    def __post_init__(self):
        if self.start_percent > self.end_percent:
            raise SettingsError(f"start_percent {self.start_percent} is after end_percent {self.end_percent}")
