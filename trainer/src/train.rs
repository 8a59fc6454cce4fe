//! The training loop: shards through the [`loader`](crate::loader) into a
//! [`Clip`] model, stepped by [`AdamW`], with checkpoints that resume
//! exactly.
//!
//! A run lives in one directory:
//!
//! ```text
//! RUN/config.json                      the settings that shape the run
//! RUN/checkpoints/step-NNNNNNNN.safetensors
//! RUN/metrics.jsonl                    one line per optimiser step
//! RUN/curves.png                       loss, learning rate, logit scale
//! RUN/model.safetensors                the final weights, open_clip's keys
//! ```
//!
//! A checkpoint holds the model's parameters and batch-norm buffers under
//! open_clip's state-dict keys, the optimiser's moments (`optimizer.m.KEY`,
//! `optimizer.v.KEY`), and in its metadata the step, the epoch and the
//! position in that epoch's sample stream. The loader's randomness is a
//! function of the seed, the epoch and each sample's key, so these restore
//! the data exactly: `--resume` continues bit for bit on a CPU.
//!
//! **Gradient accumulation** follows open_clip's `--accum-freq`: the
//! features of all micro-batches are computed first without gradients,
//! then each micro-batch is run again with gradients and its features put
//! in place among the others, so every step's gradient is that of the
//! whole batch's contrastive loss (the negatives of all micro-batches),
//! at the cost of a second forward pass.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use wit_contract::Progress;
use wit_contract::wds::Opener;

use crate::dist::{self, Collective, Local};
use crate::loader::{self, Batch, LoaderOptions, Mode};
use crate::model::{Clip, ClipConfig, l2_normalize, load_state_dict, named_buffers, named_vars};
use crate::optim::{AdamW, AdamWConfig, lr_at};

use crate::error::{Error as TrainError, Result, io};

/// The arithmetic of the forward and backward passes; the weights and the
/// optimiser always stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// Matrix products and activations in bf16 over f32 master weights
    /// (layer norms, softmax and the loss in f32); CUDA only, Candle's CPU
    /// has no bf16 matrix product.
    Bf16,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// The settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// A [`ClipConfig::preset`] name.
    pub model: String,
    /// Samples per optimiser step.
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation); divides
    /// `batch_size`.
    pub accum: usize,
    /// Optimiser steps in the run; the cosine schedule ends there.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay on weights.
    pub weight_decay: f64,
    /// Steps of linear warmup.
    pub warmup: u64,
    /// Clip the global gradient norm to this, if set.
    pub clip_norm: Option<f64>,
    /// The compute precision.
    pub precision: Precision,
    /// Seed of the initialisation, the shard order, the shuffle and the
    /// crops.
    pub seed: u64,
    /// Shuffle buffer of the sample stream.
    pub shuffle: usize,
    /// Preprocessing threads.
    pub workers: usize,
    /// Steps between checkpoints (the last step always gets one).
    pub checkpoint_every: u64,
    /// Shard streams the global batch draws from in equal shares
    /// ([`loader::epoch_of_streams`]); the ranks of a job split them. 0: one
    /// per rank. Fixed for a run: keep it to resume with another number of
    /// ranks.
    pub streams: usize,
    /// Each rank's loss over its own rows against every column (OpenCLIP's
    /// `--local-loss`) instead of the whole global loss on every rank; the
    /// same gradient.
    pub local_loss: bool,
    /// Checkpoints kept (the newest).
    pub keep: usize,
    /// Samples in an epoch (OpenCLIP's `--train-num-samples`): an epoch
    /// ends after ⌈this / global batch⌉ steps, or sooner where the shards
    /// run out. `None`: an epoch is one pass over the shards.
    pub train_num_samples: Option<u64>,
    /// Shards drawn with replacement by every stream, without end
    /// (OpenCLIP's `--dataset-resampled`,
    /// [`wit_contract::wds::ShardStream::resampled`]); needs
    /// `train_num_samples` to end the epochs.
    pub resampled: bool,
}

impl TrainConfig {
    /// CLIP's settings for `model` (Table 18 of the paper; open_clip's
    /// optimiser defaults), with `steps` steps of `batch_size`.
    pub fn new(model: &str, batch_size: usize, steps: u64) -> TrainConfig {
        TrainConfig {
            model: model.to_string(),
            batch_size,
            accum: 1,
            steps,
            lr: 5e-4,
            weight_decay: 0.2,
            warmup: 2000.min(steps / 10),
            clip_norm: None,
            precision: Precision::F32,
            seed: 0,
            shuffle: 1000,
            workers: 2,
            checkpoint_every: 1000,
            keep: 2,
            streams: 0,
            local_loss: false,
            train_num_samples: None,
            resampled: false,
        }
    }

    /// The settings that shape the results, as stored in `config.json`, for
    /// a job of `world` ranks reading `streams` shard streams; a resumed run
    /// must have the same. The batch size is the global one; the streams
    /// are named only where there are more than one (as before them).
    fn identity(&self, world: usize, streams: usize) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "model": self.model,
            "batch_size": self.batch_size * world,
            "accum": self.accum,
            "steps": self.steps,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "warmup": self.warmup,
            "clip_norm": self.clip_norm,
            "precision": format!("{:?}", self.precision),
            "seed": self.seed,
            "shuffle": self.shuffle,
        });
        if streams > 1 {
            doc["streams"] = serde_json::json!(streams);
        }
        if let Some(n) = self.train_num_samples {
            doc["train_num_samples"] = serde_json::json!(n);
        }
        if self.resampled {
            doc["dataset_resampled"] = serde_json::json!(true);
        }
        doc
    }

    fn optimiser(&self, model: &ClipConfig) -> AdamWConfig {
        // The paper's Adam settings differ for ResNets (Table 18).
        let (beta2, eps) = if model.is_resnet() {
            (0.999, 1e-8)
        } else {
            (0.98, 1e-6)
        };
        AdamWConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            beta1: 0.9,
            beta2,
            eps,
            warmup: self.warmup,
            total: self.steps,
            clip_norm: self.clip_norm,
        }
    }
}

/// Where a run stands: the state a checkpoint restores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Optimiser steps taken.
    pub step: u64,
    /// The epoch being read.
    pub epoch: u64,
    /// Samples of that epoch consumed, per shard stream (one, unless
    /// [`TrainConfig::streams`] says more).
    pub offsets: Vec<u64>,
    /// Samples trained on, all epochs.
    pub samples: u64,
    /// Steps taken in the epoch being read.
    pub epoch_step: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Where it stopped.
    pub position: Position,
    /// The last step's loss.
    pub loss: f32,
    /// Steps taken by this invocation.
    pub steps_now: u64,
    /// Samples the loader skipped (no image, no caption, undecodable),
    /// this invocation.
    pub skipped: u64,
    /// Seconds of this invocation's steps (loading excluded), and of them
    /// the seconds in collective calls between ranks (moving data and
    /// waiting for the slowest rank; 0 on one process).
    pub step_secs: f64,
    /// See [`TrainSummary::step_secs`].
    pub collective_secs: f64,
}

/// A run: the model, its optimiser and where it stands.
pub struct Trainer<'a> {
    config: TrainConfig,
    model_config: ClipConfig,
    dir: PathBuf,
    vars: VarMap,
    model: Clip,
    opt: AdamW,
    position: Position,
    device: Device,
    progress: &'a dyn Progress,
    collective: Arc<dyn Collective>,
    /// The same collective, counting its time.
    timed: Arc<dist::Timed>,
    /// Shard streams in all, and this rank's.
    streams: usize,
    mine: Vec<usize>,
}

const CHECKPOINTS: &str = "checkpoints";
const OPT_PREFIX: &str = "optimizer.";

impl<'a> Trainer<'a> {
    /// Opens the run in `dir`: a new one (an error if `dir` already holds
    /// checkpoints and `resume` is false), or the newest checkpoint's state
    /// when `resume` is true (its `config.json` must match `config`).
    ///
    /// # Errors
    /// Bad settings, a run directory in another state, unreadable files.
    pub fn open(
        config: TrainConfig,
        dir: &Path,
        device: &Device,
        resume: bool,
        progress: &'a dyn Progress,
    ) -> Result<Trainer<'a>> {
        Trainer::open_rank(config, dir, device, resume, progress, Arc::new(Local))
    }

    /// [`Trainer::open`] for one rank of a data-parallel job whose ranks
    /// talk through `collective`: `config.batch_size` is this rank's share
    /// of the global batch, every rank opens the same `dir` (a shared file
    /// system), and rank 0 alone writes in it.
    ///
    /// # Errors
    /// Those of [`Trainer::open`]; streams that the ranks cannot split
    /// evenly.
    pub fn open_rank(
        config: TrainConfig,
        dir: &Path,
        device: &Device,
        resume: bool,
        progress: &'a dyn Progress,
        collective: Arc<dyn Collective>,
    ) -> Result<Trainer<'a>> {
        let (rank, world) = (collective.rank(), collective.world());
        let streams = if config.streams == 0 {
            world
        } else {
            config.streams
        };
        if !streams.is_multiple_of(world) || !(config.batch_size * world).is_multiple_of(streams) {
            return Err(TrainError::Invalid(format!(
                "{streams} shard stream(s) over {world} rank(s) with {} sample(s) each: the ranks must divide the streams, and the streams the global batch ({})",
                config.batch_size,
                config.batch_size * world
            )));
        }
        let mine: Vec<usize> = (rank..streams).step_by(world).collect();
        let timed = Arc::new(dist::Timed::new(collective));
        let collective: Arc<dyn Collective> = timed.clone();
        let model_config = ClipConfig::preset(&config.model).ok_or_else(|| {
            TrainError::Invalid(format!(
                "unknown model {:?}; the presets are {}",
                config.model,
                crate::model::PRESETS.join(", ")
            ))
        })?;
        if config.accum == 0
            || config.batch_size == 0
            || !config.batch_size.is_multiple_of(config.accum)
        {
            return Err(TrainError::Invalid(format!(
                "the batch size ({}) must be a positive multiple of the accumulation steps ({})",
                config.batch_size, config.accum
            )));
        }
        if config.precision == Precision::Bf16 && device.is_cpu() {
            return Err(TrainError::Invalid(
                "bf16 needs --device cuda: Candle's CPU has no bf16 matrix product; use f32 on a CPU".into(),
            ));
        }
        if config.steps == 0 {
            return Err(TrainError::Invalid("at least one step is needed".into()));
        }
        if config.train_num_samples == Some(0) {
            return Err(TrainError::Invalid(
                "--train-num-samples must be at least 1".into(),
            ));
        }
        if config.resampled && config.train_num_samples.is_none() {
            return Err(TrainError::Invalid(
                "--dataset-resampled draws shards without end: give --train-num-samples for the length of an epoch".into(),
            ));
        }
        let ckpt_dir = dir.join(CHECKPOINTS);
        std::fs::create_dir_all(&ckpt_dir).map_err(io(&ckpt_dir))?;
        let latest = latest_checkpoint(&ckpt_dir)?;
        let config_path = dir.join("config.json");
        if latest.is_some() && !resume {
            return Err(TrainError::Invalid(format!(
                "{} already holds checkpoints: pass --resume to continue that run, or choose another directory",
                dir.display()
            )));
        }
        let identity = config.identity(world, streams);
        if resume && config_path.exists() {
            check_same(&config_path, &identity)?;
        }
        if rank == 0 {
            let mut doc = identity;
            doc["preset"] = serde_json::json!(format!("{model_config:?}"));
            write_atomic(
                &config_path,
                serde_json::to_string_pretty(&doc).expect("json").as_bytes(),
            )?;
        }

        let vars = VarMap::new();
        let model = Clip::seeded(model_config, &vars, device, config.seed)?;
        let opt = AdamW::new(named_vars(&vars), config.optimiser(&model_config))?;
        let mut t = Trainer {
            config,
            model_config,
            dir: dir.to_path_buf(),
            vars,
            model,
            opt,
            position: Position {
                offsets: vec![0; streams],
                ..Position::default()
            },
            device: device.clone(),
            progress,
            collective,
            timed,
            streams,
            mine,
        };
        if let (true, Some(path)) = (resume, latest) {
            t.load(&path)?;
        }
        if rank == 0 {
            t.trim_metrics()?;
        }
        Ok(t)
    }

    /// Where the run stands.
    pub fn position(&self) -> Position {
        self.position.clone()
    }

    /// The model.
    pub fn model(&self) -> &Clip {
        &self.model
    }

    /// Trains on `shards` until the configured number of steps, or until
    /// step `stop_at` (a checkpoint is written there, as a job ending at a
    /// time limit would want).
    ///
    /// # Errors
    /// Tensor errors, unwritable files, or shards too small for one batch.
    pub fn run(
        &mut self,
        shards: &[String],
        opener: &dyn Opener,
        stop_at: Option<u64>,
    ) -> Result<TrainSummary> {
        let end = stop_at.unwrap_or(self.config.steps).min(self.config.steps);
        let micro = self.config.batch_size / self.config.accum;
        let size = self.model_config.vision.image_size() as u32;
        let world = self.collective.world();
        let lead = self.collective.rank() == 0;
        let mut summary = TrainSummary {
            position: self.position.clone(),
            loss: f32::NAN,
            steps_now: 0,
            skipped: 0,
            step_secs: 0.0,
            collective_secs: 0.0,
        };
        let collective_before = self.timed.seconds();
        let metrics_path = self.dir.join("metrics.jsonl");
        let mut metrics = if lead {
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&metrics_path)
                    .map_err(io(&metrics_path))?,
            )
        } else {
            None
        };
        self.progress
            .start("train: steps", self.config.steps, self.position.step);
        let mut failure: Option<TrainError> = None;
        while self.position.step < end {
            // A checkpoint at the step that filled its epoch: the next one.
            if self
                .epoch_steps()
                .is_some_and(|n| self.position.epoch_step >= n)
            {
                self.position.epoch += 1;
                self.position.epoch_step = 0;
                self.position.offsets = vec![0; self.streams];
            }
            let opts = LoaderOptions {
                size,
                batch_size: micro,
                mode: Mode::train(),
                seed: self.config.seed,
                shuffle: self.config.shuffle,
                workers: self.config.workers,
                context: self.model_config.text.context,
                resampled: self.config.resampled,
                ..LoaderOptions::default()
            };
            let parts: Vec<(usize, u64)> = self
                .mine
                .iter()
                .map(|&s| (s, self.position.offsets[s]))
                .collect();
            let resumed = parts.iter().any(|p| p.1 > 0);
            let mut pending: Vec<(Batch, Vec<u64>)> = Vec::new();
            let mut steps_this_epoch = 0u64;
            let epoch_steps = self.epoch_steps();
            let mut full = false;
            // Why this rank's epoch ended, where it was not that its
            // streams ran out: another rank's ran out, or training did.
            let mut settled = false;
            let mut clock = Instant::now();
            let streams = (self.streams, parts.as_slice());
            let counts = loader::epoch_of_streams(
                shards,
                opener,
                &opts,
                self.position.epoch,
                streams,
                |b, ends| {
                    if b.len() < micro {
                        return true; // the epoch's short tail: dropped
                    }
                    // Every rank steps only while every rank has a batch.
                    if world > 1 {
                        match all_have_batches(&self.collective, true) {
                            Ok(true) => {}
                            Ok(false) => {
                                settled = true;
                                return false;
                            }
                            Err(e) => {
                                failure = Some(e);
                                return false;
                            }
                        }
                    }
                    pending.push((b, ends.to_vec()));
                    if pending.len() < self.config.accum {
                        return true;
                    }
                    let (batches, ends): (Vec<Batch>, Vec<Vec<u64>>) =
                        std::mem::take(&mut pending).into_iter().unzip();
                    let started = Instant::now();
                    let stepped = self.step(&batches);
                    summary.step_secs += started.elapsed().as_secs_f64();
                    match stepped {
                        Ok((loss, norm)) => {
                            let secs = clock.elapsed().as_secs_f64();
                            clock = Instant::now();
                            let p = &mut self.position;
                            p.step += 1;
                            if let Some(ends) = ends.last() {
                                for (&s, &e) in self.mine.iter().zip(ends) {
                                    p.offsets[s] = e;
                                }
                            }
                            p.samples += (self.config.batch_size * world) as u64;
                            p.epoch_step += 1;
                            steps_this_epoch += 1;
                            summary.steps_now += 1;
                            summary.loss = loss;
                            if let Some(m) = metrics.as_mut()
                                && let Err(e) = self.log(m, &metrics_path, loss, norm, secs)
                            {
                                failure = Some(e);
                                return false;
                            }
                            let at_end = self.position.step >= end;
                            if (at_end
                                || self
                                    .position
                                    .step
                                    .is_multiple_of(self.config.checkpoint_every))
                                && let Err(e) = self.checkpoint()
                            {
                                failure = Some(e);
                                return false;
                            }
                            // --train-num-samples: every rank ends the
                            // epoch at the same step.
                            full = epoch_steps.is_some_and(|n| self.position.epoch_step >= n);
                            settled |= at_end || full;
                            !(at_end || full)
                        }
                        Err(e) => {
                            failure = Some(e);
                            false
                        }
                    }
                },
            );
            // This rank's streams ran out: the ranks still stepping hear it.
            if world > 1
                && !settled
                && failure.is_none()
                && let Err(e) = all_have_batches(&self.collective, false)
            {
                failure = Some(e);
            }
            summary.skipped += counts.unusable();
            let why = counts.explain();
            if !why.is_empty() {
                tracing::warn!("epoch {}: {why}", self.position.epoch);
            }
            if let Some(e) = failure.take() {
                self.progress.finish();
                return Err(e);
            }
            if self.position.step >= end {
                break;
            }
            if let (Some(n), false) = (epoch_steps, full)
                && steps_this_epoch > 0
                && lead
            {
                tracing::warn!(
                    "epoch {} ended after {} of the {n} steps --train-num-samples asks for: the shards hold fewer samples",
                    self.position.epoch,
                    self.position.epoch_step
                );
            }
            // A resumed epoch may have had nothing left after its offset; a
            // whole epoch without one step means the data is too small.
            if steps_this_epoch == 0 && !resumed {
                self.progress.finish();
                return Err(TrainError::Invalid(
                    if counts.samples == 0 && why.is_empty() {
                        format!(
                            "the {} shard(s) hold no samples: no image was stored (`wit status` gives the download's failures by reason)",
                            shards.len()
                        )
                    } else if counts.samples == 0 {
                        format!(
                            "one epoch of the {} shard(s) gives no usable sample: {why}",
                            shards.len()
                        )
                    } else {
                        format!(
                            "one epoch of the {} shard(s) gives {} usable sample(s) to this rank's {} shard stream(s), fewer than its batch of {}: add data or lower --batch-size{}",
                            shards.len(),
                            counts.samples,
                            self.mine.len(),
                            self.config.batch_size,
                            if why.is_empty() {
                                String::new()
                            } else {
                                format!(" ({why})")
                            }
                        )
                    },
                ));
            }
            self.position.epoch += 1;
            self.position.epoch_step = 0;
            self.position.offsets = vec![0; self.streams];
        }
        self.progress.finish();
        if lead && self.position.step >= self.config.steps {
            self.export(&self.dir.join("model.safetensors"))?;
        }
        summary.position = self.position.clone();
        summary.collective_secs = self.timed.seconds() - collective_before;
        Ok(summary)
    }

    /// Steps in an epoch under `--train-num-samples` (OpenCLIP's
    /// ⌈samples / global batch⌉); `None` without.
    fn epoch_steps(&self) -> Option<u64> {
        let global = (self.config.batch_size * self.collective.world()) as u64;
        self.config.train_num_samples.map(|n| n.div_ceil(global))
    }

    fn tensors(&self, b: &Batch) -> Result<(Tensor, Tensor)> {
        let s = self.model_config.vision.image_size();
        let n = b.len();
        let images = Tensor::from_slice(&b.images, (n, 3, s, s), &self.device)?
            .to_dtype(self.config.precision.dtype())?;
        let tokens =
            Tensor::from_slice(&b.tokens, (n, self.model_config.text.context), &self.device)?;
        Ok((images, tokens))
    }

    /// One optimiser step over `batches` (the micro-batches); returns the
    /// loss and the gradient norm.
    fn step(&mut self, batches: &[Batch]) -> Result<(f32, f64)> {
        let compute = match self.config.precision {
            Precision::F32 => self.model.clone(),
            // Fresh casts of the master weights, which the last step moved.
            p => Clip::cast(self.model_config, &self.vars, &self.device, p.dtype())?,
        };
        let inputs = batches
            .iter()
            .map(|b| self.tensors(b))
            .collect::<Result<Vec<_>>>()?;
        let (loss, grads) = step_gradients(
            &compute,
            &named_vars(&self.vars),
            &inputs,
            &self.collective,
            self.config.local_loss,
        )?;
        let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        // With the local loss each rank has its rows' share.
        let loss = dist::mean_over_ranks(loss, &self.collective)?;
        if !loss.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the loss is {loss} at step {}: lower --lr or set --clip-norm",
                self.position.step + 1
            )));
        }
        let norm = self.opt.step(&grads)?;
        Ok((loss, norm))
    }

    fn log(
        &self,
        out: &mut std::fs::File,
        path: &Path,
        loss: f32,
        norm: f64,
        secs: f64,
    ) -> Result<()> {
        let p = &self.position;
        let lr = lr_at(&self.config.optimiser(&self.model_config), p.step - 1);
        let scale = self
            .model
            .logit_scale
            .exp()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let rate = (self.config.batch_size * self.collective.world()) as f64 / secs.max(1e-9);
        let line = serde_json::json!({
            "step": p.step,
            "epoch": p.epoch,
            "samples": p.samples,
            "loss": loss,
            "lr": lr,
            "grad_norm": norm,
            "logit_scale": scale,
            "samples_per_s": rate,
        });
        writeln!(out, "{line}").map_err(io(path))?;
        // The status first: the progress line that the step may log shows it.
        self.progress
            .message(&format!("loss {loss:.4} lr {lr:.2e} {rate:.1} samples/s"));
        self.progress.advance(1);
        Ok(())
    }

    /// The model's state dict: parameters and buffers under open_clip's
    /// keys, `num_batches_tracked` as int64 as PyTorch keeps it.
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (name, var) in named_vars(&self.vars)
            .into_iter()
            .chain(named_buffers(&self.vars))
        {
            let t = var.as_tensor().to_device(&Device::Cpu)?;
            let t = if name.ends_with(".num_batches_tracked") {
                t.to_dtype(DType::I64)?
            } else {
                t
            };
            out.push((name, t));
        }
        Ok(out)
    }

    /// Writes the model alone, with open_clip's state-dict keys, to `path`
    /// (safetensors, atomically).
    ///
    /// # Errors
    /// Unwritable file.
    pub fn export(&self, path: &Path) -> Result<()> {
        let meta = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            ("wit.model".to_string(), self.config.model.clone()),
            ("wit.step".to_string(), self.position.step.to_string()),
        ]);
        save(path, self.state_dict()?, meta)
    }

    /// Writes a checkpoint (rank 0; every rank takes part, as the stream
    /// positions are gathered from all).
    fn checkpoint(&self) -> Result<()> {
        let mut offsets = vec![0u64; self.streams];
        for &s in &self.mine {
            offsets[s] = self.position.offsets[s];
        }
        self.collective.all_reduce_sum_u64(&mut offsets)?;
        if self.collective.rank() != 0 {
            return Ok(());
        }
        let p = &self.position;
        // One stream: its position under the name it always had.
        let (key, value) = match offsets.as_slice() {
            [one] => ("wit.offset", one.to_string()),
            many => (
                "wit.offsets",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let mut tensors = self.state_dict()?;
        for (k, t) in self.opt.state() {
            tensors.push((format!("{OPT_PREFIX}{k}"), t.to_device(&Device::Cpu)?));
        }
        let meta = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            ("wit.model".to_string(), self.config.model.clone()),
            ("wit.step".to_string(), p.step.to_string()),
            ("wit.epoch".to_string(), p.epoch.to_string()),
            (key.to_string(), value),
            ("wit.samples".to_string(), p.samples.to_string()),
            ("wit.epoch_step".to_string(), p.epoch_step.to_string()),
            ("wit.seed".to_string(), self.config.seed.to_string()),
        ]);
        let dir = self.dir.join(CHECKPOINTS);
        save(&dir.join(checkpoint_name(p.step)), tensors, meta)?;
        // Older checkpoints beyond `keep`, newest kept.
        let mut all = list_checkpoints(&dir)?;
        all.sort();
        let excess = all.len().saturating_sub(self.config.keep.max(1));
        for (_, path) in all.into_iter().take(excess) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        self.curves()
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let meta = read_metadata(path)?;
        let num = |k: &str| -> Result<u64> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                TrainError::Invalid(format!("{}: no {k} in the metadata", path.display()))
            })
        };
        let offsets = match meta.get("wit.offsets") {
            Some(list) => list
                .split(',')
                .map(|v| v.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| {
                    TrainError::Invalid(format!("{}: wit.offsets {list:?}", path.display()))
                })?,
            None => vec![num("wit.offset")?],
        };
        if offsets.len() != self.streams {
            return Err(TrainError::Invalid(format!(
                "{} was written by a run of {} shard stream(s), this one reads {}: give --streams {}",
                path.display(),
                offsets.len(),
                self.streams,
                offsets.len()
            )));
        }
        let position = Position {
            step: num("wit.step")?,
            epoch: num("wit.epoch")?,
            offsets,
            samples: num("wit.samples")?,
            // Checkpoints from before epochs had a length have none; their
            // runs' epochs end with the shards.
            epoch_step: num("wit.epoch_step").unwrap_or(0),
        };
        let tensors = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        load_state_dict(&self.vars, &tensors)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        self.opt
            .restore(
                |k| tensors.get(&format!("{OPT_PREFIX}{k}")).cloned(),
                position.step,
            )
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        self.position = position;
        Ok(())
    }

    /// Drops metric lines past the restored step (written after the last
    /// checkpoint by a run that was then killed).
    fn trim_metrics(&self) -> Result<()> {
        let path = self.dir.join("metrics.jsonl");
        let Ok(f) = std::fs::File::open(&path) else {
            return Ok(());
        };
        let mut kept = String::new();
        let mut dropped = false;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(io(&path))?;
            let step = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["step"].as_u64());
            match step {
                Some(s) if s <= self.position.step => {
                    kept.push_str(&line);
                    kept.push('\n');
                }
                _ => dropped = true,
            }
        }
        if dropped {
            write_atomic(&path, kept.as_bytes())?;
        }
        Ok(())
    }

    /// Redraws `curves.png` from `metrics.jsonl`.
    fn curves(&self) -> Result<()> {
        let path = self.dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut loss = Vec::new();
        let mut lr = Vec::new();
        for v in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let (Some(s), Some(l), Some(r)) =
                (v["step"].as_f64(), v["loss"].as_f64(), v["lr"].as_f64())
            else {
                continue;
            };
            loss.push((s, l));
            lr.push((s, r / self.config.lr.max(f64::MIN_POSITIVE)));
        }
        let png = wit_plot::lines(
            &format!("{}: training loss", self.config.model),
            "step",
            "loss; learning rate / peak",
            &[
                wit_plot::Series {
                    name: "contrastive loss",
                    points: &loss,
                },
                wit_plot::Series {
                    name: "learning rate / peak",
                    points: &lr,
                },
            ],
            false,
        )
        .map_err(|e| TrainError::Invalid(format!("drawing the curves: {e}")))?;
        write_atomic(&self.dir.join("curves.png"), &png)
    }
}

/// Whether every rank has a batch for the next step, given whether this
/// one has: a vote each rank casts once per step while it has batches,
/// and once when its streams run out, so that all ranks end an epoch at
/// the same step.
fn all_have_batches(c: &Arc<dyn Collective>, have: bool) -> Result<bool> {
    let mut votes = [u64::from(have)];
    c.all_reduce_sum_u64(&mut votes)?;
    Ok(votes[0] == c.world() as u64)
}

/// The device named `name`: `cpu`, or `cuda` (`cuda:N` for GPU N), which
/// needs a build with the `cuda` feature.
///
/// # Errors
/// An unknown name, or CUDA without the feature or a GPU.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(n) => n
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        TrainError::Invalid(format!("device {name:?}: use cpu, cuda or cuda:N"))
                    })?,
                None => {
                    return Err(TrainError::Invalid(format!(
                        "device {name:?}: use cpu, cuda or cuda:N"
                    )));
                }
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(TrainError::Invalid(format!(
                    "device {name}: this wit was built without CUDA; build it with `cargo build --release --features cuda` (../shared/cuda/README.md)"
                )));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.strip_suffix(".safetensors"))
            .and_then(|s| s.parse().ok())
        {
            out.push((step, e.path()));
        }
    }
    Ok(out)
}

/// The loss and the gradients of one optimiser step of data-parallel
/// training, as each rank computes them: `micro` holds this rank's
/// micro-batches of the step, (images `(n, 3, s, s)`, tokens
/// `(n, context)`) each, and the gradients returned are those of the
/// contrastive loss over the global batch (every rank's micro-batches
/// together), averaged over the ranks of `collective`, keyed by the
/// tensors of `params` (the f32 master weights).
///
/// One micro-batch is one forward and one backward pass. More follow
/// open_clip's `--accum-freq`: every micro-batch's features are computed
/// first without gradients, then each micro-batch again with them, its
/// features put in place among the others (gathered over ranks with the
/// gradient flowing back, [`dist::clip_loss`]), so the sum over
/// micro-batches is the gradient of the whole batch's loss. Batch norm
/// takes its statistics over each micro-batch of all ranks together.
///
/// # Errors
/// Candle's errors, or the transport's.
pub fn step_gradients(
    model: &Clip,
    params: &[(String, candle_core::Var)],
    micro: &[(Tensor, Tensor)],
    collective: &Arc<dyn Collective>,
    local_loss: bool,
) -> Result<(Tensor, candle_core::backprop::GradStore)> {
    let c = collective;
    let embed = |images: &Tensor, tokens: &Tensor| -> Result<(Tensor, Tensor)> {
        // Batch norm over the global batch, as one process has it.
        dist::with_synchronised_batch_norm(c, || {
            let im = l2_normalize(&model.project_image(&model.image_features(images, true)?)?)?;
            let tx = l2_normalize(&model.encode_text(tokens)?)?;
            Ok((im, tx))
        })
    };
    let (loss, mut grads) = if let [(images, tokens)] = micro {
        let (im, tx) = embed(images, tokens)?;
        let loss = dist::clip_loss(&im, &tx, &model.logit_scale, c, local_loss)?;
        let grads = loss.backward()?;
        (loss, grads)
    } else {
        let cached = micro
            .iter()
            .map(|(i, t)| {
                let (a, b) = embed(i, t)?;
                Ok((a.detach(), b.detach()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut total: Option<candle_core::backprop::GradStore> = None;
        let mut loss = None;
        for (j, (i, t)) in micro.iter().enumerate() {
            let live = embed(i, t)?;
            let side = |which: usize| -> Result<Tensor> {
                let parts: Vec<&Tensor> = (0..micro.len())
                    .map(|k| {
                        let pair = if k == j { &live } else { &cached[k] };
                        if which == 0 { &pair.0 } else { &pair.1 }
                    })
                    .collect();
                Ok(Tensor::cat(&parts, 0)?)
            };
            // The temperature's gradient is taken once, not once per
            // micro-batch.
            let scale = if j == 0 {
                model.logit_scale.clone()
            } else {
                model.logit_scale.detach()
            };
            let l = dist::clip_loss(&side(0)?, &side(1)?, &scale, c, local_loss)?;
            let g = l.backward()?;
            total = Some(match total {
                None => g,
                Some(mut acc) => {
                    for (_, var) in params {
                        if let Some(add) = g.get(var.as_tensor()) {
                            let sum = match acc.get(var.as_tensor()) {
                                Some(have) => (have + add)?,
                                None => add.clone(),
                            };
                            acc.insert(var.as_tensor(), sum);
                        }
                    }
                    acc
                }
            });
            loss = Some(l);
        }
        let Some(loss) = loss else {
            return Err(TrainError::Invalid("a step needs a micro-batch".into()));
        };
        (loss, total.expect("as many as the loss"))
    };
    dist::average_gradients(&mut grads, params, c)?;
    Ok((loss, grads))
}

fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(dir)?
        .into_iter()
        .max_by_key(|c| c.0)
        .map(|c| c.1))
}

fn check_same(path: &Path, want: &serde_json::Value) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let have: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    for (k, v) in want.as_object().expect("an object") {
        if &have[k] != v {
            return Err(TrainError::Invalid(format!(
                "{}: the run was started with {k} = {}, not {v}; resume with the same settings",
                path.display(),
                have[k]
            )));
        }
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(wit_contract::manifest::write_atomic(path, bytes)?)
}

/// Writes `tensors` and `meta` as safetensors to `path`, atomically: streamed
/// to a temporary name, then renamed (a checkpoint can be gigabytes, so
/// not through [`write_atomic`], which takes the bytes in memory).
fn save(path: &Path, tensors: Vec<(String, Tensor)>, meta: HashMap<String, String>) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(name);
    safetensors::tensor::serialize_to_file(tensors, Some(meta), &tmp)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", tmp.display())))?;
    sort_header(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Rewrites the JSON header of the safetensors file at `path` with its keys
/// in sorted order, in place. The `safetensors` crate writes `__metadata__`
/// from a `HashMap`, in an order that changes from run to run; sorted, the
/// same model gives the same bytes. The header keeps its length (the same
/// keys and values, compact JSON; padded with spaces, as the format allows,
/// were it ever shorter).
///
/// # Errors
/// An unreadable file or a bad header.
fn sort_header(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let bad = |e: &dyn std::fmt::Display| {
        TrainError::Invalid(format!("{}: bad safetensors header: {e}", path.display()))
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io(path))?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| bad(&e))?;
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).map_err(io(path))?;
    let mut v: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(&e))?;
    if let Some(meta) = v.get_mut("__metadata__") {
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta.take()).map_err(|e| bad(&e))?;
        *meta = serde_json::to_value(sorted).map_err(|e| bad(&e))?;
    }
    let mut sorted = serde_json::to_vec(&v).map_err(|e| bad(&e))?;
    if sorted.len() > len {
        return Err(bad(&format!(
            "{} bytes sorted against {len} as written",
            sorted.len()
        )));
    }
    sorted.resize(len, b' ');
    f.seek(SeekFrom::Start(8)).map_err(io(path))?;
    f.write_all(&sorted).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// The `__metadata__` of a safetensors file, read from its header only.
///
/// # Errors
/// An unreadable file or a bad header.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io(path))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(TrainError::Invalid(format!(
            "{}: not a safetensors file (header of {len} bytes)",
            path.display()
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(io(path))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| TrainError::Invalid(format!("{}: bad header: {e}", path.display())))?;
    Ok(v["__metadata__"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}
