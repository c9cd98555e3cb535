"""T5 caption encoder on a tiny T5 folder built offline (tests/t5_fixtures.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from t5_fixtures import TINY_T5_WIDTH, make_tiny_t5, tiny_caption

from vidrefine.errors import MissingWeights
from vidrefine.models.text import TEXT_LENGTH, EmbeddingCache, T5TextEncoder, zero_uncond
from vidrefine.runtime.placement import place_blocks

PAD_ID, EOS_ID = 0, 1


@pytest.fixture(scope="session")
def t5_folder(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny-t5")


@pytest.fixture
def encoder(t5_folder):
    return T5TextEncoder.from_folder(t5_folder, dtype=torch.float32, device="cpu")


def reference_ids(folder, caption):
    """Token ids from the sentencepiece model itself: pieces + </s>, cut to 226, padded with 0."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    ids = sp.encode(caption)[: TEXT_LENGTH - 1] + [EOS_ID]
    return torch.tensor([ids + [PAD_ID] * (TEXT_LENGTH - len(ids))])


def reference_hidden(folder, input_ids, attention_mask=None):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def count_forwards(encoder):
    batches = []
    encoder.model.register_forward_hook(
        lambda module, args, kwargs, out: batches.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    return batches


def test_short_caption_is_padded_to_226_tokens_when_encoded(encoder):
    caption = tiny_caption(8, seed=1)
    out = encoder.encode([caption])
    assert out.embeddings.shape == (1, TEXT_LENGTH, TINY_T5_WIDTH)
    assert out.truncated == (False,)
    assert 9 <= out.token_counts[0] < 60  # 8 words of 2-8 letters, plus </s>


def test_encoding_matches_t5_without_attention_mask_when_padded(encoder, t5_folder):
    caption = tiny_caption(10, seed=2)
    ids = reference_ids(t5_folder, caption)
    out = encoder.encode([caption]).embeddings
    torch.testing.assert_close(out, reference_hidden(t5_folder, ids), rtol=1e-5, atol=1e-5)
    # a masked encoder gives different rows, so the comparison above can tell the two apart
    masked = reference_hidden(t5_folder, ids, attention_mask=(ids != PAD_ID).long())
    assert (out - masked).abs().max() > 1e-3


def test_long_caption_is_truncated_and_flagged_when_over_226_tokens(encoder, t5_folder):
    long_caption = tiny_caption(300, seed=3)
    short_caption = tiny_caption(5, seed=4)
    out = encoder.encode([long_caption, short_caption])
    assert out.embeddings.shape == (2, TEXT_LENGTH, TINY_T5_WIDTH)
    assert out.truncated == (True, False)
    assert out.token_counts[0] > TEXT_LENGTH
    expected = reference_hidden(t5_folder, reference_ids(t5_folder, long_caption))
    torch.testing.assert_close(out.embeddings[:1], expected, rtol=1e-5, atol=1e-5)


def test_batch_rows_equal_single_encodings_when_captions_are_mixed(t5_folder):
    captions = [tiny_caption(n, seed=n) for n in (3, 20, 7)]
    batch = T5TextEncoder.from_folder(t5_folder, dtype=torch.float32).encode(captions)
    for i, caption in enumerate(captions):
        single = T5TextEncoder.from_folder(t5_folder, dtype=torch.float32).encode([caption])
        torch.testing.assert_close(batch.embeddings[i], single.embeddings[0])


def test_cache_hit_avoids_reencoding_when_caption_seen_before(encoder):
    batches = count_forwards(encoder)
    a, b, c = (tiny_caption(6, seed=s) for s in (10, 11, 12))
    first = encoder.encode([a, b, a])
    assert batches == [2]  # one forward, duplicates encoded once
    again = encoder.encode([b, a])
    assert batches == [2]
    torch.testing.assert_close(again.embeddings, first.embeddings[[1, 0]], rtol=0, atol=0)
    encoder.encode([a, c])
    assert batches == [2, 1]  # only the new caption ran


def test_cache_keys_differ_when_dtype_differs(t5_folder):
    cache = EmbeddingCache()
    caption = tiny_caption(6, seed=13)
    fp32 = T5TextEncoder.from_folder(t5_folder, dtype=torch.float32, cache=cache)
    bf16 = T5TextEncoder.from_folder(t5_folder, dtype=torch.bfloat16, cache=cache)
    assert fp32.encode([caption]).embeddings.dtype == torch.float32
    assert bf16.encode([caption]).embeddings.dtype == torch.bfloat16
    assert len(cache) == 2


def test_cached_captions_still_encode_when_weights_released(encoder):
    seen, unseen = tiny_caption(6, seed=14), tiny_caption(6, seed=15)
    before = encoder.encode([seen]).embeddings
    encoder.release()
    assert encoder.model is None
    torch.testing.assert_close(encoder.encode([seen]).embeddings, before, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="release"):
        encoder.encode([unseen])


def test_uncond_is_all_zeros_shaped_like_caption_when_requested(encoder):
    emb = encoder.encode([tiny_caption(4, seed=16)]).embeddings
    uncond = zero_uncond(emb)
    assert uncond.shape == emb.shape and uncond.dtype == emb.dtype
    assert not uncond.any()


def test_missing_folder_raises_missing_weights_naming_it_when_absent(tmp_path):
    folder = tmp_path / "no-such-t5"
    with pytest.raises(MissingWeights, match="no-such-t5"):
        T5TextEncoder.from_folder(folder)


def test_folder_without_config_raises_missing_weights_when_incomplete(tmp_path):
    folder = tmp_path / "empty-t5"
    folder.mkdir()
    with pytest.raises(MissingWeights, match="config.json"):
        T5TextEncoder.from_folder(folder)


def test_hub_layout_with_only_spiece_model_tokenizes_the_same_when_loaded(t5_folder, tmp_path):
    # google/t5-v1_1-xxl ships spiece.model without tokenizer.json
    hub = tmp_path / "hub-t5"
    hub.mkdir()
    for name in ("spiece.model", "config.json", "model.safetensors"):
        shutil.copy(t5_folder / name, hub / name)
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "model_max_length": 512}
    (hub / "tokenizer_config.json").write_text(json.dumps(config))
    caption = tiny_caption(12, seed=17)
    ours = T5TextEncoder.from_folder(hub, dtype=torch.float32).encode([caption])
    reference = reference_hidden(t5_folder, reference_ids(t5_folder, caption))
    torch.testing.assert_close(ours.embeddings, reference, rtol=1e-5, atol=1e-5)


def test_streamed_blocks_encode_the_same_and_return_to_the_host_when_streamed(t5_folder):
    caption = tiny_caption(12, seed=3)
    plain = T5TextEncoder.from_folder(t5_folder, dtype=torch.float32).encode([caption])
    streamed = T5TextEncoder.from_folder(t5_folder, dtype=torch.float32)
    blocks = streamed.blocks
    streamer = place_blocks(streamed.model, blocks, torch.device("cpu"), offload="layer")
    host = [p.data_ptr() for p in blocks.parameters()]  # the streamer's own host copies
    loads = []  # registered after the streamer's hook: sees the copies the block runs with
    for block in blocks:
        block.register_forward_pre_hook(
            lambda m, _a: loads.append(all(p.data_ptr() not in host for p in m.parameters()))
        )
    out = streamed.encode([caption])
    torch.testing.assert_close(out.embeddings, plain.embeddings, rtol=0, atol=0)
    assert loads == [True] * len(blocks)  # every block ran on a fresh copy
    assert [p.data_ptr() for p in blocks.parameters()] == host  # and went back to the host
    streamer.remove()
    streamed.release()
    assert streamed.model is None
