"""The Keras Functional LSTM encoder–decoder (the seed design, with attention).

`build` makes three Functional models over one set of layers: the teacher-forcing model
that is trained, and the encoder and one-step decoder that decoding calls. Sharing
layers is what keeps the three in step. The decoder's state is (h, c); the memory every
step reads is the encoder outputs and the source mask.
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops
from keras.src import backend as keras_backend  # its `rnn`, the loop keras.layers.LSTM runs

from enja.models.architectures import seq2seq
from enja.models.config import ModelConfig

_ATTENTION_LAYERS = {"luong": layers.Attention, "bahdanau": layers.AdditiveAttention}


@keras.saving.register_keras_serializable(package="enja")
class ProjectedLSTM(layers.LSTM):
    """keras.layers.LSTM that multiplies the inputs of all time steps by the input kernel
    in one matmul before the recurrence, so that each step multiplies only h by the
    recurrent kernel. Keras's LSTM on a CPU (no cuDNN) multiplies each step's input apart,
    [B, E] by [E, 4U] once per step, and again in the gradient. Same weights (the cell's
    kernel, recurrent kernel and bias), same math, in another order of additions; the
    masking and the direction are keras's own loop's (`backend.rnn`). Without dropout
    inside the cell only (dropout here acts on the embeddings)."""

    def inner_loop(self, sequences: Any, initial_state: Any, mask: Any, training: bool = False
                   ) -> tuple[Any, Any, list[Any]]:
        cell = self.cell
        if cell.dropout or cell.recurrent_dropout:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        shape = ops.shape(sequences)
        projected = ops.matmul(ops.reshape(sequences, (-1, sequences.shape[-1])), cell.kernel)
        if cell.use_bias:
            projected = projected + cell.bias
        projected = ops.reshape(projected, (shape[0], shape[1], 4 * cell.units))

        def step(inputs: Any, states: list[Any]) -> tuple[Any, list[Any]]:
            h, c = states
            z = ops.split(inputs + ops.matmul(h, cell.recurrent_kernel), 4, axis=-1)
            c, o = cell._compute_carry_and_output_fused(z, c)
            h = o * cell.activation(c)
            return h, [h, c]

        return keras_backend.rnn(
            step, projected, list(initial_state), go_backwards=self.go_backwards, mask=mask,
            unroll=self.unroll, input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences)


class LstmEncoderDecoder(seq2seq.EncoderDecoder):
    def __init__(self, trainer: keras.Model, encoder: keras.Model, decoder_step: keras.Model) -> None:
        super().__init__(trainer)
        # source_ids [B, S] -> encoder_outputs [B, S, U], h [B, U], c [B, U]
        self.encoder = encoder
        # {token [B, 1], state_h, state_c, source_mask [B, S], encoder_outputs (with
        # attention)} -> logits [B, V], h, c, attention weights [B, S] (uniform without)
        self.decoder_step = decoder_step

    def encode(self, source_ids: tf.Tensor) -> tuple[seq2seq.Memory, seq2seq.State]:
        """The outputs are copied without the padding mask Keras attaches to them: `step`
        takes the source mask as an input instead, and Keras would warn that it drops it."""
        outputs, state_h, state_c = self.encoder(source_ids)
        return (ops.copy(outputs), seq2seq.source_mask(source_ids)), (state_h, state_c)

    def step(self, token: tf.Tensor, state: seq2seq.State, memory: seq2seq.Memory
             ) -> tuple[tf.Tensor, seq2seq.State, tf.Tensor]:
        """Passes the encoder outputs only to a model that attends to them."""
        (state_h, state_c), (encoder_outputs, source_mask) = state, memory
        available = {"token": token, "state_h": state_h, "state_c": state_c,
                     "encoder_outputs": encoder_outputs, "source_mask": source_mask}
        logits, state_h, state_c, weights = self.decoder_step(
            {name: available[name] for name in self.decoder_step.input})
        return logits, (state_h, state_c), weights


def build(config: ModelConfig, source_vocab_size: int, target_vocab_size: int
          ) -> LstmEncoderDecoder:
    """Builds the encoder–decoder for the given vocabulary sizes (reserved ids included)."""
    source_embedding = layers.Embedding(
        source_vocab_size, config.embedding_dim, mask_zero=True, name="source_embedding")
    lstm_layer = ProjectedLSTM if config.project_inputs_once else layers.LSTM
    if config.bidirectional:
        # Two half-width directions: outputs and states keep the decoder's width.
        encoder_lstm = layers.Bidirectional(lstm_layer(
            config.units // 2, return_sequences=True, return_state=True), name="encoder_lstm")
    else:
        encoder_lstm = lstm_layer(
            config.units, return_sequences=True, return_state=True, name="encoder_lstm")
    target_embedding = layers.Embedding(
        target_vocab_size, config.embedding_dim, mask_zero=True, name="target_embedding")
    decoder_lstm = lstm_layer(
        config.units, return_sequences=True, return_state=True, name="decoder_lstm")
    attention = (_ATTENTION_LAYERS[config.attention](name="attention")
                 if config.attention != "none" else None)
    attention_output = seq2seq.SequenceDense(config.units, activation="tanh",
                                             name="attention_output")
    logits_layer = seq2seq.logits_layer(config, target_embedding)
    # Dropout layers are inert outside training, so the serving graph ignores them.
    source_dropout = layers.Dropout(config.dropout, name="source_dropout")
    target_dropout = layers.Dropout(config.dropout, name="target_dropout")
    output_dropout = layers.Dropout(config.dropout, name="output_dropout")

    def encode(source_ids: Any) -> tuple[Any, ...]:
        outputs, *states = encoder_lstm(source_dropout(source_embedding(source_ids)))
        if config.bidirectional:  # [forward h, forward c, backward h, backward c]
            states = [layers.Concatenate()([states[0], states[2]]),
                      layers.Concatenate()([states[1], states[3]])]
        return outputs, *states

    def decode(target_ids: Any, state: list[Any], encoder_outputs: Any, source_mask: Any
               ) -> tuple[Any, Any, Any, Any]:
        outputs, h, c = decoder_lstm(target_dropout(target_embedding(target_ids)),
                                     initial_state=state)
        if attention is None:
            # Without attention every source position weighs the same, for plots.
            mask = ops.cast(source_mask, "float32")
            uniform = ops.expand_dims(mask / ops.sum(mask, axis=1, keepdims=True), 1)
            weights = uniform + ops.zeros_like(outputs[:, :, :1])  # [B, T, S]
        else:
            context, weights = attention(
                [outputs, encoder_outputs], mask=[None, source_mask],
                return_attention_scores=True)
            outputs = attention_output(layers.Concatenate()([outputs, context]))
        return logits_layer(output_dropout(outputs)), h, c, weights

    source_ids = keras.Input(shape=(None,), dtype="int64", name=seq2seq.SOURCE_INPUT)
    target_in = keras.Input(shape=(None,), dtype="int64", name=seq2seq.TARGET_INPUT)
    encoder_outputs, h, c = encode(source_ids)
    logits, _, _, _ = decode(target_in, [h, c], encoder_outputs,
                             seq2seq.source_mask(source_ids))
    trainer = keras.Model({seq2seq.SOURCE_INPUT: source_ids, seq2seq.TARGET_INPUT: target_in},
                          logits, name="seq2seq")
    encoder = keras.Model(source_ids, [encoder_outputs, h, c], name="encoder")

    token = keras.Input(shape=(1,), dtype="int64", name="token")
    state_h = keras.Input(shape=(config.units,), name="state_h")
    state_c = keras.Input(shape=(config.units,), name="state_c")
    memory = keras.Input(shape=(None, config.units), name="encoder_outputs")
    memory_mask = keras.Input(shape=(None,), dtype="bool", name="source_mask")
    step_logits, next_h, next_c, step_weights = decode(token, [state_h, state_c], memory,
                                                       memory_mask)
    step_inputs = {"token": token, "state_h": state_h, "state_c": state_c,
                   "source_mask": memory_mask}
    if attention is not None:
        step_inputs["encoder_outputs"] = memory
    decoder_step = keras.Model(
        step_inputs,
        [step_logits[:, 0], next_h, next_c, step_weights[:, 0]],
        name="decoder_step")
    return LstmEncoderDecoder(trainer, encoder, decoder_step)
