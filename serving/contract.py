"""Names in the exported SavedModel's signatures: the contract with TF Serving clients and TFMA."""

# serving_default: raw English sentences in, Japanese translations out.
SERVING_SIGNATURE = "serving_default"
TEXT_INPUT = "text"  # tf.string [batch]
TRANSLATIONS_OUTPUT = "translations"  # tf.string [batch]
SCORES_OUTPUT = "scores"  # tf.float32 [batch], log-probability of the translation

# For TFMA and BulkInferrer: serialized tf.Examples in, translations shaped [batch, 1] out.
EXAMPLES_SIGNATURE = "translate_examples"
EXAMPLES_INPUT = "examples"  # tf.string [batch]

# Like serving_default, with the beam width chosen per request (1 is greedy decoding).
OPTIONS_SIGNATURE = "translate_with_options"
BEAM_WIDTH_INPUT = "beam_width"  # tf.int32 scalar, at least 1

# For attention plots: greedy decoding of raw English (TEXT_INPUT) with its attention.
ATTENTION_SIGNATURE = "attention"
SOURCE_TOKENS_OUTPUT = "source_tokens"  # tf.string [batch, S], whitespace tokens, "" padded
TARGET_TOKENS_OUTPUT = "target_tokens"  # tf.string [batch, T], "</s>" included, "<pad>" after
TARGET_IDS_OUTPUT = "target_ids"  # tf.int64 [batch, T], the target vocabulary ids, 0 after </s>
ATTENTION_OUTPUT = "attention_weights"  # tf.float32 [batch, T, S], rows sum to 1 over the source
