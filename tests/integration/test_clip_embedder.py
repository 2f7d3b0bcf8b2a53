"""ClipEmbedder through its real loading path, on a tiny CLIP model built here.

Weights cannot be downloaded in tests, so the fixture builds a CLIP model of a few
thousand parameters with transformers, saves it with its tokenizer and image processor,
and wraps it as a sentence-transformers directory laid out like the hub's
``clip-ViT-B-32`` (``modules.json`` + ``0_CLIPModel/``). Needs the optional extra
(``pip install -r requirements-clip.txt``); those tests skip without it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesearch.embedders.base import Embedder
from imagesearch.embedders.clip import ClipEmbedder
from imagesearch.errors import EmbedderConfigurationError, InvalidEmbeddingInput

HAVE_CLIP_EXTRA = all(
    importlib.util.find_spec(name) is not None
    for name in ("torch", "transformers", "sentence_transformers")
)
requires_clip = pytest.mark.skipif(
    not HAVE_CLIP_EXTRA,
    reason="optional CLIP extra not installed: pip install -r requirements-clip.txt",
)

PROJECTION_DIM = 8
MODEL_DIR_NAME = "tiny-clip"


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _build_tiny_clip(root: Path) -> Path:
    """A randomly initialised (seeded) CLIP saved as a sentence-transformers model dir."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    # Byte-level alphabet, each symbol also as a word end: any text tokenizes, no merges.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in alphabet:
            vocab[symbol + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])

    torch.manual_seed(1234)
    text = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=PROJECTION_DIM
    )
    model_dir = root / MODEL_DIR_NAME
    module_dir = model_dir / "0_CLIPModel"
    CLIPModel(config).save_pretrained(module_dir)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(module_dir)
    # The hub's clip-ViT-B-32 layout: one legacy CLIPModel module in 0_CLIPModel/.
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "0_CLIPModel",
            "type": "sentence_transformers.models.CLIPModel",
        }
    ]
    (model_dir / "modules.json").write_text(json.dumps(modules))
    return model_dir


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_CLIP_EXTRA:
        pytest.skip("optional CLIP extra not installed: pip install -r requirements-clip.txt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # a hub lookup would be a bug here
        return _build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def embedder(tiny_clip_dir: Path) -> ClipEmbedder:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return ClipEmbedder(str(tiny_clip_dir))


def _reference_features(model_dir: Path, *, text: str | None = None, image: bytes | None = None):
    """The same model run directly with transformers, as an independent oracle."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    module_dir = model_dir / "0_CLIPModel"
    model = CLIPModel.from_pretrained(module_dir).eval()
    processor = CLIPProcessor.from_pretrained(module_dir)
    with torch.no_grad():
        if text is not None:
            inputs = processor(text=[text], return_tensors="pt", padding=True)
            features = model.get_text_features(**inputs)
        else:
            pixels = Image.open(io.BytesIO(image)).convert("RGB")
            inputs = processor(images=[pixels], return_tensors="pt")
            features = model.get_image_features(**inputs)
    if not isinstance(features, torch.Tensor):  # newer transformers return a model output
        features = features.pooler_output
    vector = features[0].numpy().astype(np.float32)
    return vector / np.linalg.norm(vector)


@requires_clip
def test_loads_through_sentence_transformers_and_reports_model_facts(
    embedder: ClipEmbedder,
) -> None:
    # Given the tiny model loaded by directory path
    # Then it is an Embedder whose dimension comes from the model and whose id is the dir name
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == PROJECTION_DIM
    assert embedder.model_id == MODEL_DIR_NAME


@requires_clip
@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "a red suede sneaker"},
        {"image": _png((200, 20, 20))},
        {"image": _jpeg((20, 20, 200))},
        {"text": "blue", "image": _jpeg((20, 20, 200))},
    ],
    ids=["text", "png", "jpeg", "joint"],
)
def test_every_input_kind_gives_a_unit_float32_vector(
    embedder: ClipEmbedder, kwargs: dict[str, object]
) -> None:
    vector = embedder.embed(**kwargs)  # type: ignore[arg-type]

    assert vector.dtype == np.float32
    assert vector.shape == (PROJECTION_DIM,)
    assert np.isfinite(vector).all()
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


@requires_clip
def test_embeddings_match_the_model_run_directly_with_transformers(
    embedder: ClipEmbedder, tiny_clip_dir: Path
) -> None:
    # Given the same text and image
    image = _png((10, 180, 40))
    # When embedded by ClipEmbedder and by transformers' CLIPModel directly
    # Then both agree: the loading path feeds the real text and vision towers
    np.testing.assert_allclose(
        embedder.embed(text="green field"),
        _reference_features(tiny_clip_dir, text="green field"),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        embedder.embed(image=image), _reference_features(tiny_clip_dir, image=image), atol=1e-5
    )


@requires_clip
def test_joint_embedding_is_the_normalised_average_of_text_and_image(
    embedder: ClipEmbedder,
) -> None:
    image = _jpeg((240, 200, 10))
    text_vector = embedder.embed(text="yellow")
    image_vector = embedder.embed(image=image)

    joint = embedder.embed(text="yellow", image=image)

    expected = (text_vector + image_vector) / np.linalg.norm(text_vector + image_vector)
    np.testing.assert_allclose(joint, expected, atol=1e-6)
    assert not np.allclose(joint, text_vector, atol=1e-3)
    assert not np.allclose(joint, image_vector, atol=1e-3)
    assert not np.allclose(text_vector, image_vector, atol=1e-3)


@requires_clip
def test_embeddings_are_deterministic_across_calls_and_loads(
    embedder: ClipEmbedder, tiny_clip_dir: Path
) -> None:
    image = _png((90, 90, 90))
    again = ClipEmbedder(str(tiny_clip_dir))

    np.testing.assert_array_equal(embedder.embed(text="cat"), embedder.embed(text="cat"))
    np.testing.assert_allclose(embedder.embed(text="cat"), again.embed(text="cat"), atol=1e-6)
    np.testing.assert_allclose(embedder.embed(image=image), again.embed(image=image), atol=1e-6)
    assert not np.allclose(embedder.embed(text="cat"), embedder.embed(text="dog"), atol=1e-4)


@requires_clip
def test_text_longer_than_the_clip_context_is_truncated_not_an_error(
    embedder: ClipEmbedder,
) -> None:
    # The tiny tokenizer (like some saved CLIP tokenizers) declares no max length.
    long_text = "sneaker " * 400

    vector = embedder.embed(text=long_text)

    assert vector.shape == (PROJECTION_DIM,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


@requires_clip
def test_undecodable_image_is_invalid_input(embedder: ClipEmbedder) -> None:
    with pytest.raises(InvalidEmbeddingInput, match="could not be decoded"):
        embedder.embed(image=b"definitely not an image")


@requires_clip
def test_nothing_to_embed_is_a_caller_error(embedder: ClipEmbedder) -> None:
    with pytest.raises(ValueError, match="text, image or both"):
        embedder.embed()


@requires_clip
def test_non_existent_model_directory_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"

    with pytest.raises(EmbedderConfigurationError, match="does not exist") as raised:
        ClipEmbedder(str(missing))

    assert str(missing) in str(raised.value)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given sentence-transformers cannot be imported (None in sys.modules blocks the import)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)

    # When a ClipEmbedder is built without an injected model
    with pytest.raises(EmbedderConfigurationError) as raised:
        ClipEmbedder("clip-ViT-B-32")

    # Then the error says how to install the extra
    assert "pip install -r requirements-clip.txt" in str(raised.value)


def test_injected_model_is_used_without_loading_anything() -> None:
    class FakeModel:
        def __init__(self) -> None:
            self.calls: list[object] = []

        def get_embedding_dimension(self) -> int:
            return 3

        def encode(self, items: list[object], **kwargs: object) -> np.ndarray:
            self.calls.append(items[0])
            return np.array([[3.0, 0.0, 4.0]] if isinstance(items[0], str) else [[0.0, 2.0, 0.0]])

    fake = FakeModel()
    embedder = ClipEmbedder(model=fake)

    assert embedder.model_id == "clip-ViT-B-32"
    assert embedder.dimension == 3
    np.testing.assert_allclose(embedder.embed(text="x"), [0.6, 0.0, 0.8], atol=1e-6)
    joint = embedder.embed(text="x", image=_png((1, 2, 3)))
    np.testing.assert_allclose(joint, np.array([0.6, 1.0, 0.8]) / np.sqrt(2.0), atol=1e-6)
    assert fake.calls[0] == "x"
    assert isinstance(fake.calls[2], Image.Image)


@requires_clip
def test_a_directory_that_is_not_a_model_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a model")

    with pytest.raises(EmbedderConfigurationError, match="could not load CLIP model") as raised:
        ClipEmbedder(str(tmp_path))

    assert "\n" not in str(raised.value)
