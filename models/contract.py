"""Names in the exported SavedModel's signatures: the contract with TF Serving clients and TFMA."""

# serving_default: raw English sentences in, Japanese translations out.
SERVING_SIGNATURE = "serving_default"
TEXT_INPUT = "text"  # tf.string [batch]
TRANSLATIONS_OUTPUT = "translations"  # tf.string [batch]
SCORES_OUTPUT = "scores"  # tf.float32 [batch], log-probability of the translation

# For TFMA and BulkInferrer: serialized tf.Examples in, translations shaped [batch, 1] out.
EXAMPLES_SIGNATURE = "translate_examples"
EXAMPLES_INPUT = "examples"  # tf.string [batch]
