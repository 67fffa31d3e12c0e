//! Where a model runs: layers offloaded to a GPU, the attention kernel and the KV cache's
//! number format (`[models.NAME] gpu_layers`, `flash_attention`, `kv_cache_type`…).

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::model::params::{LlamaModelParams, LlamaSplitMode};
use llama_cpp_2::model::LlamaModel;
use serde::{Deserialize, Serialize};

/// A model's placement. The default leaves every choice to llama.cpp, as llama-server does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Placement {
    /// Layers offloaded to the GPU; `None`: llama.cpp's default (all of them, when a GPU
    /// backend is built in).
    pub gpu_layers: Option<u32>,
    /// The GPU that holds the whole model (`split = none`) or its scratch buffers.
    pub main_gpu: Option<u32>,
    pub split: Split,
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheFormat,
}

/// How layers are spread over several GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Whole layers per GPU (llama.cpp's default).
    #[default]
    Layer,
    /// Rows of each layer across GPUs.
    Row,
    /// One GPU only: `main_gpu`.
    None,
}

/// The attention kernel: `Auto` lets llama.cpp use flash attention where the device has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttention {
    #[default]
    Auto,
    On,
    Off,
}

/// The number format of the KV cache's keys and values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheFormat {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlacementError {
    #[error("kv_cache_type = \"{0}\" needs flash attention (llama.cpp keeps a quantised V cache only with it); set flash_attention = \"on\" or \"auto\"")]
    QuantisedKvWithoutFlashAttention(&'static str),
}

impl KvCacheFormat {
    pub fn name(self) -> &'static str {
        match self {
            KvCacheFormat::F16 => "f16",
            KvCacheFormat::Q8_0 => "q8_0",
            KvCacheFormat::Q4_0 => "q4_0",
        }
    }

    fn llama(self) -> KvCacheType {
        match self {
            KvCacheFormat::F16 => KvCacheType::F16,
            KvCacheFormat::Q8_0 => KvCacheType::Q8_0,
            KvCacheFormat::Q4_0 => KvCacheType::Q4_0,
        }
    }
}

impl Placement {
    /// Refuses combinations llama.cpp would fail on at load time, with the reason.
    pub fn check(&self) -> Result<(), PlacementError> {
        match (self.kv_cache_type, self.flash_attention) {
            (KvCacheFormat::F16, _) => Ok(()),
            (format, FlashAttention::Off) => Err(PlacementError::QuantisedKvWithoutFlashAttention(
                format.name(),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn model_params(&self) -> LlamaModelParams {
        let mut params = LlamaModelParams::default().with_split_mode(match self.split {
            Split::Layer => LlamaSplitMode::Layer,
            Split::Row => LlamaSplitMode::Row,
            Split::None => LlamaSplitMode::None,
        });
        if let Some(layers) = self.gpu_layers {
            params = params.with_n_gpu_layers(layers);
        }
        if let Some(gpu) = self.main_gpu.and_then(|g| i32::try_from(g).ok()) {
            params = params.with_main_gpu(gpu);
        }
        params
    }

    pub(crate) fn context_params(&self, params: LlamaContextParams) -> LlamaContextParams {
        // llama.cpp's `llama_flash_attn_type`: -1 auto, 0 disabled, 1 enabled.
        let flash = match self.flash_attention {
            FlashAttention::Auto => -1,
            FlashAttention::Off => 0,
            FlashAttention::On => 1,
        };
        let format = self.kv_cache_type.llama();
        params
            .with_flash_attention_policy(flash)
            .with_type_k(format)
            .with_type_v(format)
    }
}

/// Where the model's layers run, as llama.cpp assigns them: repeating layers go to the
/// GPU from the last one down, so `offloaded` of `layers` are on it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlacement {
    pub layers: u32,
    pub offloaded: u32,
    /// The GPU devices llama.cpp found (empty on a CPU-only build).
    pub gpus: Vec<String>,
}

pub(crate) fn layer_placement(model: &LlamaModel, placement: &Placement) -> LayerPlacement {
    let gpus: Vec<String> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|device| !device.backend.eq_ignore_ascii_case("cpu"))
        .map(|device| format!("{} ({})", device.name, device.description))
        .collect();
    let layers = model.n_layer();
    let offloaded = match gpus.is_empty() {
        true => 0,
        false => placement.gpu_layers.unwrap_or(layers).min(layers),
    };
    LayerPlacement {
        layers,
        offloaded,
        gpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantised_kv_cache_needs_flash_attention() {
        let mut placement = Placement {
            kv_cache_type: KvCacheFormat::Q8_0,
            ..Placement::default()
        };
        assert_eq!(placement.check(), Ok(()));
        placement.flash_attention = FlashAttention::Off;
        assert_eq!(
            placement.check(),
            Err(PlacementError::QuantisedKvWithoutFlashAttention("q8_0"))
        );
        placement.kv_cache_type = KvCacheFormat::F16;
        assert_eq!(placement.check(), Ok(()));
    }
}
