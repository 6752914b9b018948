"""Tests for depthlib.profiles: name resolution, the env override, overrides and devices."""
import dataclasses
import warnings

import pytest
import torch

from depthlib import profiles
from depthlib.profiles import PROFILES, Profile, get_profile, resolve_profile_name


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("DEPTHLIB_PROFILE", raising=False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("DEPTHLIB_PROFILE", raising=False)


def test_profiles_fit_the_models_and_gpu_is_larger():
    cpu, gpu = PROFILES["cpu"], PROFILES["gpu"]
    for profile in (cpu, gpu):
        height, width = profile.mvs_size  # MVSNet's 3D U-Net needs D, H/4 and W/4 divisible by 8
        assert height % 32 == 0 and width % 32 == 0 and profile.n_depths % 8 == 0
        assert profile.nyu_render_size[0] >= profile.nyu_size[0]
    assert cpu.nyu_size == (96, 128) and cpu.mvs_size == (128, 160) and cpu.n_depths == 32
    assert gpu.nyu_size[0] * gpu.nyu_size[1] > cpu.nyu_size[0] * cpu.nyu_size[1]
    assert gpu.mvs_size[0] * gpu.mvs_size[1] > cpu.mvs_size[0] * cpu.mvs_size[1] and gpu.n_depths > cpu.n_depths
    assert gpu.nyu_train > cpu.nyu_train and gpu.epochs > cpu.epochs
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["cpu"].epochs = 5


def test_auto_resolves_to_cpu_without_cuda_and_gpu_with_cuda(monkeypatch, no_cuda):
    assert resolve_profile_name() == "cpu"
    assert get_profile().name == "cpu" and get_profile().device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_profile_name("auto") == "gpu"
    assert get_profile().device == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_is_cpu_on_this_cuda_less_machine(monkeypatch):
    monkeypatch.delenv("DEPTHLIB_PROFILE", raising=False)
    assert get_profile().name == "cpu" and get_profile().device == "cpu"


def test_env_var_overrides_auto(monkeypatch, fake_cuda):
    monkeypatch.setenv("DEPTHLIB_PROFILE", "cpu")
    assert resolve_profile_name() == "cpu"
    assert get_profile().name == "cpu"
    monkeypatch.setenv("DEPTHLIB_PROFILE", " GPU ")
    assert resolve_profile_name("auto") == "gpu"
    monkeypatch.setenv("DEPTHLIB_PROFILE", "auto")
    assert resolve_profile_name() == "gpu"  # "auto" in the env falls back to CUDA detection


def test_explicit_name_wins_over_env(monkeypatch, no_cuda):
    monkeypatch.setenv("DEPTHLIB_PROFILE", "gpu")
    assert resolve_profile_name("cpu") == "cpu"
    assert get_profile("cpu").n_depths == 32
    monkeypatch.setenv("DEPTHLIB_PROFILE", "not-a-profile")
    assert resolve_profile_name("cpu") == "cpu"  # the env is not even read


def test_unknown_names_raise_value_error_listing_choices(monkeypatch, no_cuda):
    with pytest.raises(ValueError, match=r"'tpu'.*\['auto', 'cpu', 'gpu'\]"):
        resolve_profile_name("tpu")
    with pytest.raises(ValueError, match=r"'tpu'.*\['auto', 'cpu', 'gpu'\]"):
        get_profile("tpu")
    monkeypatch.setenv("DEPTHLIB_PROFILE", "big")
    with pytest.raises(ValueError, match=r"DEPTHLIB_PROFILE='big'.*\['auto', 'cpu', 'gpu'\]"):
        resolve_profile_name()


def test_overrides_replace_fields_and_unknown_fields_raise(no_cuda):
    profile = get_profile("cpu", epochs=1, n_depths=8, mvs_size=(64, 80))
    assert isinstance(profile, Profile)
    assert (profile.epochs, profile.n_depths, profile.mvs_size) == (1, 8, (64, 80))
    assert profile.batch_size == PROFILES["cpu"].batch_size
    assert PROFILES["cpu"].epochs == 2  # the table itself is untouched
    with pytest.raises(ValueError, match=r"\['epoch'\].*'epochs'"):
        get_profile("cpu", epoch=3)


def test_gpu_profile_without_cuda_warns_once_and_uses_cpu(monkeypatch, no_cuda):
    monkeypatch.setattr(profiles, "_warned_no_cuda", False)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        profile = get_profile("gpu")
    assert (profile.name, profile.device, profile.n_depths) == ("gpu", "cpu", PROFILES["gpu"].n_depths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_profile("gpu").device == "cpu"  # second call: no warning
        assert get_profile("cpu").device == "cpu"


def test_strict_fp32_turns_tf32_off_inside_and_restores_the_settings():
    from depthlib.profiles import strict_fp32

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    try:
        with strict_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(KeyError), strict_fp32():  # restored on an exception too
            raise KeyError("inside")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class _WarningFlags:
    """torch.backends.cudnn / cuda.matmul as PyTorch 2.9-2.11 have them: a use of allow_tf32 warns."""

    def __init__(self, message):
        self.message, self._value = message, True

    @property
    def allow_tf32(self):
        warnings.warn(self.message, UserWarning, stacklevel=2)
        return self._value

    @allow_tf32.setter
    def allow_tf32(self, value):
        warnings.warn(self.message, UserWarning, stacklevel=2)
        self._value = value


def test_strict_fp32_silences_only_the_tf32_api_warning_of_pytorch_2_9(monkeypatch):
    from depthlib.profiles import strict_fp32

    new_api = ("Please use the new API settings to control TF32 behavior, such as "
               "torch.backends.cudnn.conv.fp32_precision = 'tf32' ...")
    cudnn, matmul = _WarningFlags(new_api), _WarningFlags(new_api)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that got out would fail here
        with strict_fp32():
            assert not cudnn._value and not matmul._value
        assert cudnn._value and matmul._value
    other = _WarningFlags("something else about TF32")
    monkeypatch.setattr(torch.backends, "cudnn", other)
    with pytest.warns(UserWarning, match="something else"), strict_fp32():
        pass
