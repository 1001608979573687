"""Pick and load the right tokenizer class for a folder of tokenizer files."""

from __future__ import annotations

from pathlib import Path

from ..errors import TokenizerError
from .base import Tokenizer
from .bpe import MERGES_FILE, Speech2Text2Tokenizer
from .ctc_vocab import Wav2Vec2CTCTokenizer
from .fast import TOKENIZER_FILE, TokenizersTokenizer
from .files import CONFIG_FILE, read_json, read_tokenizer_config
from .mbart50 import MBart50Tokenizer
from .sentencepiece import SPM_FILE, VOCAB_FILE, Speech2TextTokenizer

TOKENIZER_CLASSES: dict[str, type[Tokenizer]] = {
    "Speech2TextTokenizer": Speech2TextTokenizer,
    "Wav2Vec2CTCTokenizer": Wav2Vec2CTCTokenizer,
    "Speech2Text2Tokenizer": Speech2Text2Tokenizer,
    "TokenizersTokenizer": TokenizersTokenizer,
    "MBart50Tokenizer": MBart50Tokenizer,
    "MBart50TokenizerFast": MBart50Tokenizer,  # only when the folder lacks tokenizer.json
}
# Speech tokenizers that never come as tokenizer.json; every other class prefers it when the folder has one.
SPEECH_CLASSES = {"Speech2TextTokenizer", "Wav2Vec2CTCTokenizer", "Speech2Text2Tokenizer"}
# config.json model_type -> tokenizer class, for folders whose tokenizer_config.json names no class.
MODEL_TYPES = {
    "speech_to_text": "Speech2TextTokenizer",
    "speech_to_text_2": "Speech2Text2Tokenizer",
    "wav2vec2": "Wav2Vec2CTCTokenizer",
    "hubert": "Wav2Vec2CTCTokenizer",
    "wav2vec2-bert": "Wav2Vec2CTCTokenizer",
    "mbart": "MBart50Tokenizer",
}
FAST = "TokenizersTokenizer"


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Load the tokenizer stored in folder.

    The class comes from tokenizer_config.json's `tokenizer_class`, else from config.json's
    `tokenizer_class` or `model_type` (an encoder-decoder's decoder model_type), else from the files present:
    sentencepiece.bpe.model means Speech2TextTokenizer, merges.txt Speech2Text2Tokenizer, a lone vocab.json
    Wav2Vec2CTCTokenizer. Any class but the speech tokenizers loads from tokenizer.json when the folder has
    one (TokenizersTokenizer: BERT, GPT-2, MBart-50, ...); MBart-50 also loads from its sentencepiece model.

    Raises:
        TokenizerError: The folder is missing, names an unsupported class, or holds no tokenizer files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TokenizerError(f"tokenizer folder {str(folder)!r} does not exist")
    name = _class_name(folder)
    if name not in SPEECH_CLASSES and (folder / TOKENIZER_FILE).is_file():
        name = FAST  # as transformers 5 does: the fast tokenizer whenever tokenizer.json exists
    if name not in TOKENIZER_CLASSES:
        supported = ", ".join(TOKENIZER_CLASSES)
        raise TokenizerError(
            f"tokenizer class {name!r} of {str(folder)!r} is not supported; supported: {supported}"
        )
    return TOKENIZER_CLASSES[name].from_pretrained(folder)


def _class_name(folder: Path) -> str:
    name = read_tokenizer_config(folder).get("tokenizer_class")
    if not name and (folder / "config.json").is_file():
        model_config = read_json(folder / "config.json", "model config")
        model_config = model_config if isinstance(model_config, dict) else {}
        # An encoder-decoder writes text with its decoder, so the decoder section names the tokenizer.
        decoder = model_config["decoder"] if isinstance(model_config.get("decoder"), dict) else {}
        model_type = decoder.get("model_type") or model_config.get("model_type", "")
        name = (
            model_config.get("tokenizer_class")
            or decoder.get("tokenizer_class")
            or MODEL_TYPES.get(model_type)
        )
    if name:
        return name
    if (folder / TOKENIZER_FILE).is_file():
        return FAST
    if (folder / SPM_FILE).is_file():
        return "Speech2TextTokenizer"
    if (folder / VOCAB_FILE).is_file():
        return "Speech2Text2Tokenizer" if (folder / MERGES_FILE).is_file() else "Wav2Vec2CTCTokenizer"
    looked_for = ", ".join([CONFIG_FILE, "config.json", TOKENIZER_FILE, SPM_FILE, VOCAB_FILE, MERGES_FILE])
    raise TokenizerError(f"no tokenizer found in {str(folder)!r}: looked for {looked_for}")
