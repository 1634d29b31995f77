"""ComfyUI's model folders and extra_model_paths.yaml (folders.py): listing, finding, yaml rules.

Each test builds its own models root and yaml files in a temp folder; the expected folder
lists are worked out by hand from ComfyUI's published rules (extra_model_paths.yaml.example,
utils/extra_config.py, folder_paths.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import folders, listing


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("VORTEX_MODELS_DIR", str(models))
    monkeypatch.delenv(folders.ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./extra_model_paths.yaml from the repo
    return models


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_each_kind_searches_comfyuis_default_subfolders_and_legacy_names_alias(root: Path) -> None:
    assert folders.folders("text_encoders") == [root / "text_encoders", root / "clip"]
    assert folders.folders("clip") == folders.folders("text_encoders")
    assert folders.folders("diffusion_models") == [root / "unet", root / "diffusion_models"]
    assert folders.folders("unet") == folders.folders("diffusion_models")
    assert folders.folders("controlnet") == [root / "controlnet", root / "t2i_adapter"]
    for kind in ("checkpoints", "vae", "loras", "upscale_models", "clip_vision", "embeddings"):
        assert folders.folders(kind) == [root / kind]


def test_listing_is_recursive_with_slashes_and_filters_extensions_like_comfyui(root: Path) -> None:
    for name in ("a.safetensors", "B.CKPT", "sub/deep/c.sft", "d.pt2", "e.pkl", "notes.txt", "f.json"):
        touch(root / "loras" / name)
    touch(root / "loras" / ".git" / "objects" / "x.safetensors")
    assert folders.list_names("loras") == ["B.CKPT", "a.safetensors", "d.pt2", "e.pkl", "sub/deep/c.sft"]


def test_listing_is_the_sorted_union_of_all_folders_of_a_kind(root: Path) -> None:
    touch(root / "unet" / "same.safetensors")
    touch(root / "diffusion_models" / "same.safetensors")
    touch(root / "diffusion_models" / "only-here.safetensors")
    assert folders.list_names("unet") == ["only-here.safetensors", "same.safetensors"]


def test_listing_sees_a_new_file_in_a_subfolder_and_survives_a_symlink_loop(root: Path) -> None:
    touch(root / "vae" / "x" / "one.safetensors")
    (root / "vae" / "x" / "loop").symlink_to(root / "vae")
    first = folders.list_names("vae")
    assert "x/one.safetensors" in first and len(first) < 10
    touch(root / "vae" / "x" / "two.safetensors")
    assert "x/two.safetensors" in folders.list_names("vae")


def test_checkpoints_list_diffusers_folders_as_one_entry(root: Path) -> None:
    pipe = root / "checkpoints" / "my-pipe"
    touch(pipe / "model_index.json", b"{}")
    touch(pipe / "unet" / "diffusion_pytorch_model.safetensors")
    touch(root / "checkpoints" / "single.safetensors")
    assert folders.list_names("checkpoints") == ["my-pipe", "single.safetensors"]
    assert listing.checkpoint_names()[0] == "vortex-tiny"


def test_builtin_tiny_split_names_come_first_in_the_split_loaders_lists(root: Path) -> None:
    touch(root / "vae" / "a.safetensors")
    assert listing.vae_names() == ["vortex-tiny-vae.safetensors", "vortex-tiny-sd3-vae.safetensors",
                                   "vortex-tiny-flux-ae.safetensors", "a.safetensors"]
    assert listing.text_encoder_names()[0] == "vortex-tiny-clip.safetensors"
    assert listing.diffusion_model_names()[0] == "vortex-tiny-unet.safetensors"


A1111 = """\
a1111:
    base_path: {base}

    checkpoints: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    embeddings: embeddings
"""


def test_a1111_section_joins_base_path_and_each_line_of_a_block(root: Path, tmp_path: Path) -> None:
    webui = tmp_path / "webui"
    (root / folders.YAML_NAME).write_text(A1111.format(base=webui))
    assert folders.folders("loras") == [root / "loras", webui / "models/Lora", webui / "models/LyCORIS"]
    assert folders.folders("checkpoints") == [root / "checkpoints", webui / "models/Stable-diffusion"]
    touch(webui / "models/LyCORIS/style.safetensors")
    assert folders.find("loras", "style.safetensors", "lora_name") == webui / "models/LyCORIS/style.safetensors"
    assert "style.safetensors" in folders.list_names("loras")


COMFYUI = """\
comfyui:
    base_path: ../ComfyUI/
    is_default: true
    checkpoints: models/checkpoints/
    text_encoders: |
         models/text_encoders/
         models/clip/
    diffusion_models: |
         models/diffusion_models/
         models/unet/
    clip: models/old_clip/
    vae: /abs/vae
empty_section:
"""


def test_comfyui_section_is_default_goes_first_and_paths_resolve_from_the_yaml_folder(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf" / folders.YAML_NAME
    touch(conf, COMFYUI.encode())
    monkeypatch.setenv(folders.ENV, str(conf))
    comfy = tmp_path / "ComfyUI" / "models"  # base_path "../ComfyUI/" relative to conf/
    # is_default inserts each folder at the front, so a block's later lines end up first
    assert folders.folders("text_encoders") == [comfy / "old_clip", comfy / "clip", comfy / "text_encoders",
                                                root / "text_encoders", root / "clip"]
    assert folders.folders("unet")[:2] == [comfy / "unet", comfy / "diffusion_models"]
    assert folders.folders("checkpoints") == [comfy / "checkpoints", root / "checkpoints"]
    assert folders.folders("vae") == [Path("/abs/vae"), root / "vae"]  # absolute lines win over base_path


def test_without_base_path_relative_folders_are_relative_to_the_yaml(root: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_MODELS", str(tmp_path / "env-models"))
    (root / folders.YAML_NAME).write_text("plain:\n  vae: here/vae\nvars:\n  base_path: $MY_MODELS\n  vae: v\n")
    assert folders.folders("vae") == [root / "vae", root / "here/vae", tmp_path / "env-models" / "v"]


def test_a_folder_named_twice_moves_to_the_front_when_a_later_section_is_default(root: Path) -> None:
    text = f"one:\n  vae: {root}/shared\ntwo:\n  is_default: true\n  vae: {root}/shared\n"
    (root / folders.YAML_NAME).write_text(text)
    assert folders.folders("vae") == [root / "shared", root / "vae"]


def test_yaml_is_read_from_the_env_var_then_the_models_root_then_the_working_folder(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd_yaml = touch(tmp_path / folders.YAML_NAME, b"cwd:\n  vae: from-cwd\n")
    assert folders.config_files() == [cwd_yaml]
    root_yaml = touch(root / folders.YAML_NAME, b"root:\n  vae: from-root\n")
    assert folders.config_files() == [root_yaml]
    a, b = touch(tmp_path / "a.yaml", b"a:\n  vae: A\n"), touch(tmp_path / "b.yaml", b"b:\n  vae: B\n")
    monkeypatch.setenv(folders.ENV, f"{a}{os.pathsep}{b}")
    assert folders.folders("vae") == [root / "vae", tmp_path / "A", tmp_path / "B"]
    monkeypatch.setenv(folders.ENV, "")  # set but empty: no yaml at all
    assert folders.folders("vae") == [root / "vae"]


@pytest.mark.parametrize(("text", "says"), [
    ("a: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "not named sections"),
    ("s:\n  vae: [a, b]\n", "'vae' is ['a', 'b']"),
    ("s:\n  base_path: 3\n  vae: v\n", "base_path is 3"),
])
def test_a_broken_yaml_is_a_clear_error_when_finding_but_lists_still_work(root: Path, text: str,
                                                                         says: str) -> None:
    (root / folders.YAML_NAME).write_text(text)
    touch(root / "vae" / "ok.safetensors")
    with pytest.raises(ModelError) as info:
        folders.find("vae", "ok.safetensors", "vae_name")
    assert info.value.code == "VE-800" and says in info.value.message
    assert folders.YAML_NAME in info.value.message and info.value.hint
    assert folders.list_names("vae") == ["ok.safetensors"]


def test_a_yaml_named_in_the_env_var_that_does_not_exist_is_reported(root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(folders.ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(ModelError, match=r"nope\.yaml.*cannot be read"):
        folders.folders("vae")


def test_find_takes_the_first_folder_that_has_the_file(root: Path) -> None:
    touch(root / "unet" / "m.safetensors", b"1")
    touch(root / "diffusion_models" / "m.safetensors", b"2")
    assert folders.find("diffusion_models", "m.safetensors", "unet_name") == root / "unet" / "m.safetensors"


def test_find_follows_symlinks_in_model_folders_to_files_elsewhere(root: Path, tmp_path: Path) -> None:
    target = touch(tmp_path / "big-disk" / "real.safetensors")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "linked.safetensors").symlink_to(target)
    assert folders.find("checkpoints", "linked.safetensors", "ckpt_name").resolve() == target


def test_missing_file_names_every_folder_searched_and_what_is_there(root: Path) -> None:
    touch(root / "clip" / "there.safetensors")
    with pytest.raises(ModelError) as info:
        folders.find("text_encoders", "gone.safetensors", "clip_name")
    msg = info.value.message
    assert "clip_name 'gone.safetensors' not found" in msg
    assert str(root / "text_encoders") in msg and str(root / "clip") in msg and "'there.safetensors'" in msg
    assert folders.YAML_NAME in (info.value.hint or "")


@pytest.mark.parametrize("name", ["../escape.safetensors", "/etc/passwd", "a\\b.safetensors", "", "x\0y"])
def test_unsafe_names_are_refused_before_touching_the_disk(root: Path, name: str) -> None:
    with pytest.raises(ModelError, match="is not a safe name"):
        folders.find("vae", name, "vae_name")
