//! [`DataParallel`]: a synthetic data-parallel training step over the ranks of a
//! [`DeviceSet`] — a stack of GEMM layers, each rank computing forward and backward on its shard
//! of the batch, the gradients summed across ranks layer by layer on a stream of their own as
//! soon as each is ready (so the all-reduce of layer `l` overlaps the backward of the layers
//! below it), then an SGD update.
//!
//! The model is linear (`Y = X·W₀·W₁·…`, loss `½/B·‖Y − T‖²` over the global batch `B`): enough
//! to load the GPUs the way a real step does (three GEMMs per layer, a gradient all-reduce per
//! layer) and to compare the N-rank result with the single-GPU one exactly as the math says it
//! must be. Everything is f16 with f32 accumulation.

use super::{CopyAllReduce, CopyPath, DeviceSet};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::memory::{DeviceBuffer, DeviceSliceMut};
use crate::ops::axpy;
use crate::ops::matmul::{Epilogue, Layout, Matmul, MatmulDesc};
use crate::stream::Stream;
use half::f16;

/// The shape and learning rate of the synthetic model.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyPath, DataParallel, DataParallelConfig, DeviceSet, GradientSync};
/// let set = DeviceSet::all()?;
/// // Four 4096 × 4096 layers, 2048 rows of the batch on each GPU.
/// let config = DataParallelConfig { hidden: 4096, layers: 4, batch_per_rank: 2048, lr: 1e-3 };
/// let sync = GradientSync::Copy(CopyPath::Auto);
/// let mut dp = DataParallel::random(&set, config, sync, 0)?;
/// dp.step()?;
/// println!("loss {}, {:.0} GFLOP per step", dp.loss()?, dp.flops_per_step() / 1e9);
/// // A zero dimension is an error, found before anything is allocated.
/// let empty = DataParallelConfig { layers: 0, ..config };
/// assert!(DataParallel::random(&set, empty, sync, 0).is_err());
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataParallelConfig {
    /// Width of every layer (the weights are `hidden` × `hidden`).
    pub hidden: usize,
    /// Number of layers.
    pub layers: usize,
    /// Rows of the batch each rank computes (the global batch is this times the ranks).
    pub batch_per_rank: usize,
    /// SGD learning rate.
    pub lr: f32,
}

/// How the gradients are summed across ranks.
///
/// The step with and without the exchange: the difference is what summing the gradients costs.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyPath, DataParallel, DataParallelConfig, DeviceSet, GradientSync};
/// let set = DeviceSet::all()?;
/// let config = DataParallelConfig { hidden: 2048, layers: 4, batch_per_rank: 2048, lr: 1e-3 };
/// for sync in [GradientSync::Copy(CopyPath::Auto), GradientSync::None] {
///     let mut dp = DataParallel::random(&set, config, sync, 7)?;
///     let start = std::time::Instant::now();
///     for _ in 0..10 {
///         dp.step()?;
///     }
///     dp.synchronize()?;
///     println!("{sync:?}: {:?} per step", start.elapsed() / 10);
///     if sync != GradientSync::None {
///         assert_eq!(dp.weights(0)?, dp.weights(set.len() - 1)?); // the replicas agree
///     }
/// }
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradientSync {
    /// NCCL all-reduce (needs the `nccl` feature and one GPU per rank).
    #[cfg(feature = "nccl")]
    Nccl,
    /// [`CopyAllReduce`] along this copy path (works with ranks sharing a GPU).
    Copy(CopyPath),
    /// No exchange: every rank updates from its own shard's gradient, so the replicas drift
    /// apart. For measuring what the exchange costs (the step's time without it).
    None,
}

enum Reducer {
    #[cfg(feature = "nccl")]
    Nccl(super::Communicator),
    Copy(Box<CopyAllReduce<f16>>, Vec<Stream>),
    None(Vec<Stream>),
}

impl Reducer {
    fn streams(&self) -> &[Stream] {
        match self {
            #[cfg(feature = "nccl")]
            Reducer::Nccl(c) => c.streams(),
            Reducer::Copy(_, s) | Reducer::None(s) => s,
        }
    }
}

/// One rank's model replica, shard and work space.
struct Rank {
    compute: Stream,
    weights: Vec<DeviceBuffer<f16>>,
    /// Every layer's gradient, one buffer each: buffers order their accesses across streams
    /// by their own events, so one buffer for all layers would make layer `l - 1`'s backward
    /// wait for layer `l`'s all-reduce.
    grads: Vec<DeviceBuffer<f16>>,
    /// `acts[l]` is layer `l`'s input; `acts[0]` is the shard of the batch.
    acts: Vec<DeviceBuffer<f16>>,
    target: DeviceBuffer<f16>,
    /// `Y − T` of the last forward pass (the loss is `½/B·‖resid‖²`).
    resid: DeviceBuffer<f16>,
    /// Back-propagated `∂loss/∂act`, ping-pong.
    delta: [DeviceBuffer<f16>; 2],
    forward: Matmul<f16, f16>,
    output: Matmul<f16, f16>,
    wgrad: Matmul<f16, f16>,
    dgrad: Matmul<f16, f16>,
}

/// A data-parallel training step of a synthetic GEMM model over a [`DeviceSet`]; see the
/// module docs above for the model.
///
/// ```no_run
/// use hikube_gpu::multi::{CopyPath, DataParallel, DataParallelConfig, DeviceSet, GradientSync};
/// let set = DeviceSet::all()?;
/// let config = DataParallelConfig { hidden: 4096, layers: 3, batch_per_rank: 4096, lr: 0.01 };
/// let mut dp = DataParallel::random(&set, config, GradientSync::Copy(CopyPath::Auto), 42)?;
/// for _ in 0..10 {
///     dp.step()?;
/// }
/// dp.synchronize()?;
/// println!("loss after the last forward pass: {}", dp.loss()?);
/// # Ok::<(), hikube_gpu::Error>(())
/// ```
pub struct DataParallel {
    set: DeviceSet,
    config: DataParallelConfig,
    ranks: Vec<Rank>,
    reducer: Reducer,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("ranks", &self.ranks.len())
            .field("config", &self.config)
            .finish()
    }
}

/// A deterministic pseudo-random f16 in `[-scale, scale)` (SplitMix64), so that every process
/// and every rank count builds the same model and data from a seed.
fn pseudo_random(seed: u64, n: usize, scale: f32) -> Vec<f16> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
            f16::from_f32((2.0 * unit - 1.0) * scale)
        })
        .collect()
}

/// [`Error::InvalidArgument`] for a gradient sync the set cannot run: copies along
/// [`CopyPath::Device`] between ranks on different GPUs (found here, not at the first step).
#[allow(clippy::indexing_slicing)] // reason: a set has at least one device (DeviceSet refuses an empty one)
fn check_sync(set: &DeviceSet, sync: GradientSync) -> Result<()> {
    if sync == GradientSync::Copy(CopyPath::Device) {
        if let Some(r) = set.devices().iter().position(|d| *d != set.devices()[0]) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "GradientSync::Copy(CopyPath::Device) copies within one GPU; ranks 0 and {r} \
                     are on two"
                ),
            });
        }
    }
    Ok(())
}

/// Element counts of a model: (one weight matrix, all the weights, one rank's batch, the
/// global batch). [`Error::InvalidDimension`] for a zero dimension, [`Error::TooLarge`] where a
/// product overflows `usize`.
fn model_sizes(ranks: usize, config: &DataParallelConfig) -> Result<(usize, usize, usize, usize)> {
    let (h, layers, b) = (config.hidden, config.layers, config.batch_per_rank);
    for (what, v) in [("hidden", h), ("layers", layers), ("batch_per_rank", b)] {
        if v == 0 {
            return Err(Error::InvalidDimension {
                what: what.to_string(),
                value: 0,
                min: 1,
            });
        }
    }
    let product = |what: &str, x: usize, y: usize| {
        x.checked_mul(y).ok_or_else(|| Error::TooLarge {
            what: format!("{what} ({x} × {y} elements)"),
            value: x,
            max: usize::MAX / y,
        })
    };
    let hh = product("a weight matrix", h, h)?;
    let weights = product("the weights", layers, hh)?;
    let rank = product("a rank's batch", b, h)?;
    let global = product("the global batch", ranks, rank)?;
    Ok((hh, weights, rank, global))
}

impl DataParallel {
    /// A model with pseudo-random weights (scaled by `1/√hidden`, so activations keep their
    /// size through the layers), inputs and targets from `seed`: the same for any rank count.
    pub fn random(
        set: &DeviceSet,
        config: DataParallelConfig,
        sync: GradientSync,
        seed: u64,
    ) -> Result<DataParallel> {
        // Sizes and the sync are checked before generating gigabytes of data for nothing.
        let (_, weights, _, global) = model_sizes(set.len(), &config)?;
        check_sync(set, sync)?;
        let h = config.hidden;
        let w = pseudo_random(seed, weights, 1.0 / (h as f32).sqrt());
        let x = pseudo_random(seed ^ 1, global, 1.0);
        let t = pseudo_random(seed ^ 2, global, 1.0);
        DataParallel::with_data(set, config, sync, &w, &x, &t)
    }

    /// A model with these weights (`layers` matrices of `hidden` × `hidden`, row-major, back to
    /// back), inputs and targets (the global batch, `ranks * batch_per_rank` rows of `hidden`):
    /// rank `r` takes rows `r * batch_per_rank ..`. [`GradientSync::Copy`] with
    /// [`CopyPath::Device`] needs every rank on one GPU ([`Error::InvalidArgument`] otherwise).
    #[allow(clippy::indexing_slicing)] // reason: row ranges are cut from the lengths checked against the config above; layers index the layer vectors built from the same config
    pub fn with_data(
        set: &DeviceSet,
        config: DataParallelConfig,
        sync: GradientSync,
        weights: &[f16],
        inputs: &[f16],
        targets: &[f16],
    ) -> Result<DataParallel> {
        let (h, layers, b) = (config.hidden, config.layers, config.batch_per_rank);
        let (hh, all_weights, per_rank, global_elems) = model_sizes(set.len(), &config)?;
        check_sync(set, sync)?;
        let n = set.len();
        let check = |what: &str, actual: usize, expected: usize| {
            if actual == expected {
                Ok(())
            } else {
                Err(Error::InvalidArgument {
                    what: format!("{what} holds {actual} elements, {expected} expected"),
                })
            }
        };
        check("weights", weights.len(), all_weights)?;
        check("inputs", inputs.len(), global_elems)?;
        check("targets", targets.len(), global_elems)?;
        let global = (n * b) as f32;
        let mut ranks = Vec::with_capacity(n);
        for (r, device) in set.devices().iter().enumerate() {
            let s = device.new_stream()?;
            let rows = r * per_rank..(r + 1) * per_rank;
            let mut acts = vec![DeviceBuffer::from_slice(&s, &inputs[rows.clone()])?];
            for _ in 1..layers {
                acts.push(DeviceBuffer::alloc(&s, per_rank)?);
            }
            ranks.push(Rank {
                weights: weights
                    .chunks(hh)
                    .map(|w| DeviceBuffer::from_slice(&s, w))
                    .collect::<Result<_>>()?,
                grads: (0..layers)
                    .map(|_| DeviceBuffer::alloc(&s, hh))
                    .collect::<Result<_>>()?,
                acts,
                target: DeviceBuffer::from_slice(&s, &targets[rows])?,
                resid: DeviceBuffer::alloc(&s, per_rank)?,
                delta: [
                    DeviceBuffer::alloc(&s, per_rank)?,
                    DeviceBuffer::alloc(&s, per_rank)?,
                ],
                forward: Matmul::new(&s, MatmulDesc::new(b, h, h))?,
                // Y − T straight from the last layer's epilogue: β = −1, C = T.
                output: Matmul::new(&s, MatmulDesc::new(b, h, h).beta(-1.0))?,
                // ∂W = (1/B)·actᵀ·δ: act (b × h row-major) read as an h × b column-major A.
                wgrad: Matmul::new(
                    &s,
                    MatmulDesc::new(h, h, b)
                        .a_layout(Layout::ColMajor)
                        .alpha(1.0 / global),
                )?,
                // δ_in = δ·Wᵀ: W (h × h row-major) read as a column-major B.
                dgrad: Matmul::new(&s, MatmulDesc::new(b, h, h).b_layout(Layout::ColMajor))?,
                compute: s,
            });
        }
        let reducer = match sync {
            #[cfg(feature = "nccl")]
            GradientSync::Nccl => Reducer::Nccl(super::Communicator::new(set)?),
            GradientSync::Copy(path) => Reducer::Copy(
                Box::new(CopyAllReduce::new(set, 16 << 20)?.with_path(path)),
                set.new_streams()?,
            ),
            GradientSync::None => Reducer::None(set.new_streams()?),
        };
        Ok(DataParallel {
            set: set.clone(),
            config,
            ranks,
            reducer,
        })
    }

    /// The configuration.
    pub fn config(&self) -> DataParallelConfig {
        self.config
    }

    /// The set the model is spread over.
    pub fn set(&self) -> &DeviceSet {
        &self.set
    }

    /// Queues one training step on every rank (forward, backward with the per-layer gradient
    /// all-reduce overlapped, SGD update) and returns without waiting.
    #[allow(clippy::indexing_slicing)] // reason: `l` ranges over the layers, and every per-layer vector holds one entry per layer
    pub fn step(&mut self) -> Result<()> {
        let layers = self.config.layers;
        // Forward.
        for rank in &mut self.ranks {
            let s = &rank.compute;
            for l in 0..layers {
                if l + 1 < layers {
                    let (input, rest) = rank.acts.split_at_mut(l + 1);
                    rank.forward.launch(
                        s,
                        &input[l],
                        &rank.weights[l],
                        &mut rest[0],
                        Epilogue::new(),
                    )?;
                } else {
                    rank.output.launch(
                        s,
                        &rank.acts[l],
                        &rank.weights[l],
                        &mut rank.resid,
                        Epilogue::new().c(&rank.target),
                    )?;
                }
            }
        }
        // Backward, top layer first; each layer's gradient is summed across ranks as soon as
        // every rank has it, on the reducer's streams, while the compute streams go on.
        for l in (0..layers).rev() {
            let mut ready = Vec::with_capacity(self.ranks.len());
            // Step k of the backward pass reads δ from `resid` (k = 0) or delta[(k - 1) % 2],
            // and writes the next δ into delta[k % 2].
            let k = layers - 1 - l;
            for rank in &mut self.ranks {
                let Rank {
                    compute: s,
                    weights,
                    grads,
                    acts,
                    resid,
                    delta: [d0, d1],
                    wgrad,
                    dgrad,
                    ..
                } = rank;
                let (read, write) = match (k, k % 2) {
                    (0, _) => (&*resid, d0),
                    (_, 0) => (&*d1, d0),
                    _ => (&*d0, d1),
                };
                wgrad.launch(s, &acts[l], read, &mut grads[l], Epilogue::new())?;
                ready.push(s.record()?);
                if l > 0 {
                    dgrad.launch(s, read, &weights[l], write, Epilogue::new())?;
                }
            }
            self.reduce_layer(l, &ready)?;
        }
        // SGD, once every gradient is summed.
        let done: Vec<Event> = self
            .reducer
            .streams()
            .iter()
            .map(Stream::record)
            .collect::<Result<_>>()?;
        let lr = self.config.lr;
        for (rank, done) in self.ranks.iter_mut().zip(&done) {
            rank.compute.wait(done)?;
            for (grad, w) in rank.grads.iter().zip(&mut rank.weights) {
                axpy(&rank.compute, -lr, grad, w)?;
            }
        }
        Ok(())
    }

    /// Sums layer `l`'s gradient across the ranks, after each rank's `ready` event.
    #[allow(clippy::indexing_slicing)] // reason: `l` is a layer index from `step`, below the layer count
    fn reduce_layer(&mut self, l: usize, ready: &[Event]) -> Result<()> {
        for (stream, ev) in self.reducer.streams().iter().zip(ready) {
            stream.wait(ev)?;
        }
        let mut grads: Vec<DeviceSliceMut<'_, f16>> = self
            .ranks
            .iter_mut()
            .map(|r| r.grads[l].as_slice_mut())
            .collect();
        match &mut self.reducer {
            #[cfg(feature = "nccl")]
            Reducer::Nccl(comm) => comm.all_reduce_in_place(&mut grads, super::ReduceOp::Sum),
            Reducer::Copy(copy, streams) => copy.all_reduce_sum(streams, &mut grads),
            Reducer::None(_) => Ok(()),
        }
    }

    /// Waits for every rank's queued work.
    pub fn synchronize(&self) -> Result<()> {
        for rank in &self.ranks {
            rank.compute.synchronize()?;
        }
        self.reducer
            .streams()
            .iter()
            .try_for_each(Stream::synchronize)
    }

    /// The loss of the last forward pass, `½/B·‖Y − T‖²` over the global batch (waits for it;
    /// computed on the host in f64).
    pub fn loss(&self) -> Result<f64> {
        let mut sum = 0.0f64;
        for rank in &self.ranks {
            for v in rank.resid.to_vec(&rank.compute)? {
                let v = f64::from(v.to_f32());
                sum += v * v;
            }
        }
        let global = (self.config.batch_per_rank * self.ranks.len()) as f64;
        Ok(0.5 * sum / global)
    }

    /// Rank `rank`'s weights (all layers, back to back), after its queued work.
    pub fn weights(&self, rank: usize) -> Result<Vec<f16>> {
        let r = self.ranks.get(rank).ok_or(Error::DeviceIndexOutOfRange {
            index: rank,
            count: self.ranks.len(),
        })?;
        let mut out = Vec::with_capacity(self.config.layers * self.config.hidden.pow(2));
        for w in &r.weights {
            out.extend(w.to_vec(&r.compute)?);
        }
        Ok(out)
    }

    /// FLOPs of one step over all ranks: three GEMMs per layer but the first (whose input
    /// gradient is not needed), `2·B·h²` each.
    pub fn flops_per_step(&self) -> f64 {
        let c = &self.config;
        let gemm = 2.0 * (c.batch_per_rank * self.ranks.len()) as f64 * (c.hidden as f64).powi(2);
        gemm * (3 * c.layers - 1) as f64
    }
}
