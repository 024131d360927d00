"""Feature names and reserved token ids shared by ExampleGen, Transform, Trainer and serving."""

SOURCE_KEY = "en"
TARGET_KEY = "ja"
SOURCE_IDS_KEY = "en_ids"
TARGET_IDS_KEY = "ja_ids"

# Derived by ExampleGen from each pair (components/pair_features.py): the data checks
# constrain them and the Evaluator slices BLEU by the source-length bucket.
SOURCE_TOKENS_KEY = "en_tokens"
TARGET_TOKENS_KEY = "ja_tokens"
SOURCE_SCRIPT_KEY = "en_script"
TARGET_SCRIPT_KEY = "ja_script"
SOURCE_LENGTH_BUCKET_KEY = "en_length_bucket"

# Ids below NUM_RESERVED are fixed; vocabulary tokens are numbered after them.
PAD_ID = 0
UNK_ID = 1
START_ID = 2
END_ID = 3
RESERVED_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
NUM_RESERVED = len(RESERVED_TOKENS)

SOURCE_VOCAB_NAME = "source_vocab"
TARGET_VOCAB_NAME = "target_vocab"
