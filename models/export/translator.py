"""The exported SavedModel: raw English in, Japanese out, with no project code needed.

It bundles the source side of the tf.Transform preprocessing (tokenizing and the
source vocabulary's lookup, `transform.source_ids`), the trained encoder–decoder and
in-graph decoding, and is saved from a `tf.Module` with `tf.saved_model.save`, which
loads with both `tf.saved_model.load` and the TF1 session loader used by TF Serving
and BulkInferrer.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from enja.models.architectures import decoding
from enja.models.architectures.seq2seq import EncoderDecoder
from enja.models.config import DecodingConfig
from enja.preprocessing import features, transform
from enja.serving import contract


class Translator(tf.Module):
    """Translates batches of raw English sentences, the way the serving signatures do."""

    def __init__(self, model: EncoderDecoder, tf_transform_output: tft.TFTransformOutput,
                 decoding_config: DecodingConfig) -> None:
        super().__init__()
        self._model = model
        # Only English comes in, so only the source side of preprocessing is served: the
        # whole Transform graph (`transform_features_layer`) also tokenized and looked up
        # placeholder Japanese on every call. The module owns the table, so it is
        # initialised once when the SavedModel loads.
        self._source_table = transform.vocabulary_table(
            tf_transform_output.vocabulary_file_by_name(features.SOURCE_VOCAB_NAME))
        self._max_source_length = tf_transform_output.transformed_feature_spec()[
            features.SOURCE_IDS_KEY].shape[0]
        # Keras 3 weights are tracked by name, which the TF1 session loader cannot
        # restore ("Could not find variable ..."); tracking the underlying
        # tf.Variables as well gives them the checkpoint keys it looks up.
        self._variables = [weight.value for weight in model.trainer.weights]
        self._target_tokens = tf.constant(
            list(features.RESERVED_TOKENS)
            + tf_transform_output.vocabulary_by_name(features.TARGET_VOCAB_NAME))
        self._decoding = decoding_config
        source_spec = tf_transform_output.raw_feature_spec()[features.SOURCE_KEY]
        self._example_spec = {features.SOURCE_KEY: source_spec}

    def _detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Joins the vocabulary tokens of `ids` with spaces, leaving out reserved ids."""
        tokens = tf.gather(self._target_tokens, ids)
        keep = tf.logical_or(ids >= features.NUM_RESERVED, tf.equal(ids, features.UNK_ID))
        return tf.strings.reduce_join(tf.ragged.boolean_mask(tokens, keep), axis=1,
                                      separator=" ")

    def _source_and_limits(self, text: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Transform's source ids [B, S] of `text` and each sentence's step limit [B]."""
        source_ids = transform.source_ids(text, transform.table_lookup(self._source_table),
                                          self._max_source_length)
        limits = decoding.output_length_limits(
            source_ids, self._decoding.max_output_length, self._decoding.max_length_ratio,
            self._decoding.max_length_offset)
        return source_ids, limits

    def _beam_search(self, text: tf.Tensor, beam_width: int | tf.Tensor) -> dict[str, tf.Tensor]:
        source_ids, limits = self._source_and_limits(text)
        ids, scores = decoding.beam_search_decode(
            self._model, source_ids, beam_width, limits, self._decoding.length_penalty)
        return {contract.TRANSLATIONS_OUTPUT: self._detokenize(ids),
                contract.SCORES_OUTPUT: scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT)])
    def translate(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._beam_search(text, self._decoding.beam_width)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT),
        tf.TensorSpec([], tf.int32, name=contract.BEAM_WIDTH_INPUT)])
    def translate_with_options(self, text: tf.Tensor, beam_width: tf.Tensor
                               ) -> dict[str, tf.Tensor]:
        return self._beam_search(text, beam_width)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT)])
    def attention(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Greedy translations with their attention over the source, for plots."""
        source_ids, limits = self._source_and_limits(text)
        ids, _, weights = decoding.greedy_decode_with_attention(self._model, source_ids, limits)
        source_tokens = transform.tokenize(text).to_tensor(
            default_value="", shape=tf.shape(source_ids, out_type=tf.int64))
        return {contract.SOURCE_TOKENS_OUTPUT: source_tokens,
                contract.TARGET_TOKENS_OUTPUT: tf.gather(self._target_tokens, ids),
                contract.TARGET_IDS_OUTPUT: ids,
                contract.ATTENTION_OUTPUT: weights}

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def translate_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, self._example_spec)
        outputs = self.translate(tf.reshape(parsed[features.SOURCE_KEY], [-1]))
        # BulkInferrer wants [batch, 1] outputs.
        return {name: value[:, None] for name, value in outputs.items()}


def save(translator: Translator, export_dir: str) -> None:
    """Saves `translator` with the signatures TF Serving and TFMA call."""
    tf.saved_model.save(translator, export_dir, signatures={
        contract.SERVING_SIGNATURE: translator.translate,
        contract.EXAMPLES_SIGNATURE: translator.translate_examples,
        contract.OPTIONS_SIGNATURE: translator.translate_with_options,
        contract.ATTENTION_SIGNATURE: translator.attention,
    })

