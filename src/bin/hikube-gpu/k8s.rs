//! `hikube-gpu k8s`: Kubernetes manifests for each Hikube GPU instance type, built from typed
//! objects (`k8s-openapi`, API 1.33) so that they are valid by construction, and written as YAML.
//!
//! Per instance type: a PersistentVolumeClaim for the reports, a Job that runs `hikube-gpu bench`
//! into it, and a Deployment for the inference workload. For the namespace: the Namespace and a
//! ResourceQuota on `requests.nvidia.com/gpu`. The committed copies under `deploy/k8s/` are
//! checked against this generator by the tests below (`cargo test`).

use crate::CliResult;
use hikube_gpu::catalog::CATALOG;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, Namespace, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceQuota, ResourceQuotaSpec, ResourceRequirements, SecurityContext,
    Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The image the manifests run by default.
pub const DEFAULT_IMAGE: &str = "ghcr.io/hikube/hikube-gpu:0.1.0";
/// The namespace by default.
pub const DEFAULT_NAMESPACE: &str = "hikube-gpu";
/// The inference command by default: the `cnn_inference` example as `deploy/Dockerfile` installs
/// it, checking itself and then serving batches until the pod stops.
pub const DEFAULT_INFERENCE_COMMAND: &str = "/usr/local/bin/cnn_inference --serve";
/// The node label that names a node's instance type (a well-known Kubernetes label).
const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
/// The extended resource of the NVIDIA device plugin.
const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Where the benchmark Job mounts its reports volume.
const REPORTS_MOUNT: &str = "/reports";
/// The non-root user of `deploy/Dockerfile`.
const IMAGE_UID: i64 = 10001;

/// What a Hikube instance type offers besides its GPU, from the seed page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceShape {
    /// The instance type, e.g. `gpu.rtx4090`.
    pub name: &'static str,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in GB.
    pub memory_gb: u32,
}

/// vCPU and memory of each instance type (the seed page); the GPUs come from the catalog.
const SHAPES: &[InstanceShape] = &[
    InstanceShape {
        name: "gpu.rtx4090",
        vcpus: 8,
        memory_gb: 32,
    },
    InstanceShape {
        name: "gpu.rtx3090",
        vcpus: 8,
        memory_gb: 32,
    },
    InstanceShape {
        name: "gpu.rtx3080",
        vcpus: 8,
        memory_gb: 32,
    },
    InstanceShape {
        name: "gpu.tesla-v100",
        vcpus: 16,
        memory_gb: 64,
    },
    InstanceShape {
        name: "gpu.tesla-t4",
        vcpus: 4,
        memory_gb: 16,
    },
];

/// One instance type: its shape and the catalog's GPU models on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// vCPU and memory.
    pub shape: InstanceShape,
    /// The catalog's models offered as this instance type, in catalog order.
    pub gpus: Vec<&'static str>,
}

impl Instance {
    /// The instance type without its `gpu.` prefix, for object names: `rtx4090`.
    pub fn short(&self) -> &'static str {
        self.shape
            .name
            .strip_prefix("gpu.")
            .unwrap_or(self.shape.name)
    }

    /// CPU request: three quarters of the vCPUs, leaving room for the kubelet and daemons.
    fn cpu_request(&self) -> u32 {
        (self.shape.vcpus * 3 / 4).max(1)
    }

    /// Memory request (and limit), in GB: three quarters of the instance's memory.
    fn memory_request_gb(&self) -> u32 {
        (self.shape.memory_gb * 3 / 4).max(1)
    }
}

/// The instance types of the catalog, in catalog order, without repeats; an error names an
/// instance type whose vCPU and memory this module does not know.
pub fn instances() -> CliResult<Vec<Instance>> {
    let mut out: Vec<Instance> = Vec::new();
    for spec in CATALOG {
        let Some(name) = spec.instance_type else {
            continue;
        };
        if let Some(known) = out.iter_mut().find(|i| i.shape.name == name) {
            known.gpus.push(spec.name);
            continue;
        }
        let shape = SHAPES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("instance type {name}: its vCPU and memory are not known"))?;
        out.push(Instance {
            shape: *shape,
            gpus: vec![spec.name],
        });
    }
    Ok(out)
}

/// Options of `k8s`.
#[derive(Debug, clap::Args, PartialEq)]
pub struct K8sArgs {
    /// The instance type (`gpu.rtx4090`, `gpu.rtx3090`, `gpu.rtx3080`, `gpu.tesla-v100`,
    /// `gpu.tesla-t4`), or `all`.
    #[arg(long, default_value = "all", value_name = "TYPE")]
    pub instance: String,
    /// The container image (built from deploy/Dockerfile).
    #[arg(long, default_value = DEFAULT_IMAGE, value_name = "REF")]
    pub image: String,
    /// The namespace of every object.
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The inference Deployment's command, split at whitespace (no quoting). The default is the
    /// `cnn_inference` example.
    #[arg(long, default_value = DEFAULT_INFERENCE_COMMAND, value_name = "COMMAND")]
    pub inference_command: String,
    /// GPUs the namespace may request in all (the ResourceQuota).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub gpu_quota: u32,
    /// Write <instance type>.yaml per instance type and quota.yaml into this directory (created
    /// if missing), instead of every object to stdout.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// What the manifests are made of, the options resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Container image.
    pub image: String,
    /// Namespace.
    pub namespace: String,
    /// The inference container's command.
    pub inference_command: Vec<String>,
    /// The ResourceQuota's GPUs.
    pub gpu_quota: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: DEFAULT_IMAGE.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            inference_command: DEFAULT_INFERENCE_COMMAND
                .split_whitespace()
                .map(Into::into)
                .collect(),
            gpu_quota: 4,
        }
    }
}

/// Runs `hikube-gpu k8s`.
pub fn run(args: &K8sArgs) -> CliResult {
    let settings = Settings {
        image: args.image.clone(),
        namespace: args.namespace.clone(),
        inference_command: args
            .inference_command
            .split_whitespace()
            .map(String::from)
            .collect(),
        gpu_quota: args.gpu_quota,
    };
    if settings.inference_command.is_empty() {
        return Err("--inference-command is empty".into());
    }
    let all = instances()?;
    let chosen: Vec<Instance> = if args.instance == "all" {
        all
    } else {
        let known = all.iter().map(|i| i.shape.name).collect::<Vec<_>>();
        vec![all
            .into_iter()
            .find(|i| i.shape.name == args.instance)
            .ok_or_else(|| {
                format!(
                    "unknown instance type {}: one of {} or all",
                    args.instance,
                    known.join(", ")
                )
            })?]
    };
    let files = render(&chosen, &settings)?;
    match &args.out {
        Some(dir) => {
            write_files(dir, &files)?;
            for (name, _) in &files {
                eprintln!("wrote {}", dir.join(name).display());
            }
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            for (i, (_, text)) in files.iter().enumerate() {
                if i > 0 {
                    stdout.write_all(b"---\n")?;
                }
                stdout.write_all(text.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// The files: `<instance type>.yaml` for each instance, in order, then `quota.yaml`.
pub fn render(instances: &[Instance], settings: &Settings) -> CliResult<Vec<(String, String)>> {
    let mut files = Vec::new();
    for instance in instances {
        let header = format!(
            "# Generated by `hikube-gpu k8s`: do not edit; see README (Deployment on Kubernetes).\n\
             # {}: {} ({} vCPU, {} GB), one GPU.\n",
            instance.shape.name,
            instance.gpus.join(" or "),
            instance.shape.vcpus,
            instance.shape.memory_gb,
        );
        let text = documents(
            &header,
            &[
                serde_norway::to_string(&reports_claim(instance, settings))?,
                serde_norway::to_string(&bench_job(instance, settings))?,
                serde_norway::to_string(&inference_deployment(instance, settings))?,
            ],
        );
        files.push((format!("{}.yaml", instance.shape.name), text));
    }
    let header = format!(
        "# Generated by `hikube-gpu k8s`: do not edit; see README (Deployment on Kubernetes).\n\
         # The namespace, and at most {} GPU(s) requested in it at once.\n",
        settings.gpu_quota
    );
    let text = documents(
        &header,
        &[
            serde_norway::to_string(&namespace(settings))?,
            serde_norway::to_string(&gpu_quota(settings))?,
        ],
    );
    files.push(("quota.yaml".into(), text));
    Ok(files)
}

/// YAML documents, one after another, under a comment.
fn documents(header: &str, docs: &[String]) -> String {
    let mut text = header.to_string();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        text.push_str(doc);
    }
    text
}

/// Writes the files into `dir`, created if missing.
pub fn write_files(dir: &Path, files: &[(String, String)]) -> CliResult {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn labels(instance: &Instance, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "hikube-gpu".into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/instance".into(), instance.short().into()),
    ])
}

fn meta(name: String, settings: &Settings, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn quantities(items: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
        .collect()
}

fn reports_claim_name(instance: &Instance) -> String {
    format!("hikube-gpu-reports-{}", instance.short())
}

/// The volume that keeps the benchmark reports.
fn reports_claim(instance: &Instance, settings: &Settings) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(
            reports_claim_name(instance),
            settings,
            labels(instance, "reports"),
        ),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantities(&[("storage", "1Gi".into())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One GPU; CPU and memory that fit the instance type. Memory's limit is its request (no
/// overcommit); CPU has no limit (throttling a benchmark's host thread would skew it).
fn gpu_resources(instance: &Instance) -> ResourceRequirements {
    let memory = format!("{}G", instance.memory_request_gb());
    ResourceRequirements {
        requests: Some(quantities(&[
            ("cpu", instance.cpu_request().to_string()),
            ("memory", memory.clone()),
            (GPU_RESOURCE, "1".into()),
        ])),
        limits: Some(quantities(&[
            ("memory", memory),
            (GPU_RESOURCE, "1".into()),
        ])),
        ..Default::default()
    }
}

/// A pod of one hikube-gpu container on a node of the instance type.
fn gpu_pod(
    instance: &Instance,
    settings: &Settings,
    mut container: Container,
    mut volumes: Vec<Volume>,
    restart_policy: &str,
) -> PodSpec {
    // The driver's JIT cache of the PTX lives in the writable /tmp (the root is read-only).
    volumes.push(Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        });
    container.image = Some(settings.image.clone());
    container.env = Some(vec![EnvVar {
        name: "CUDA_CACHE_PATH".into(),
        value: Some("/tmp/nv-compute-cache".into()),
        ..Default::default()
    }]);
    container.resources = Some(gpu_resources(instance));
    container.security_context = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    });
    PodSpec {
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: INSTANCE_TYPE_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![instance.shape.name.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // GPU nodes are commonly tainted so that only GPU pods land on them.
        tolerations: Some(vec![Toleration {
            key: Some(GPU_RESOURCE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(IMAGE_UID),
            run_as_group: Some(IMAGE_UID),
            fs_group: Some(IMAGE_UID),
            ..Default::default()
        }),
        restart_policy: Some(restart_policy.into()),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The benchmark: `hikube-gpu bench --out /reports/<instance type>`, on the reports volume.
fn bench_job(instance: &Instance, settings: &Settings) -> Job {
    let labels = labels(instance, "bench");
    let container = Container {
        name: "bench".into(),
        command: Some(
            [
                "hikube-gpu",
                "bench",
                "--out",
                &format!("{REPORTS_MOUNT}/{}", instance.shape.name),
            ]
            .map(String::from)
            .to_vec(),
        ),
        volume_mounts: Some(vec![VolumeMount {
            name: "reports".into(),
            mount_path: REPORTS_MOUNT.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let volumes = vec![Volume {
        name: "reports".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: reports_claim_name(instance),
            ..Default::default()
        }),
        ..Default::default()
    }];
    Job {
        metadata: meta(
            format!("hikube-gpu-bench-{}", instance.short()),
            settings,
            labels.clone(),
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            // The full suite takes minutes; an hour means something is stuck.
            active_deadline_seconds: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(gpu_pod(instance, settings, container, volumes, "Never")),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The inference workload, one replica per GPU.
fn inference_deployment(instance: &Instance, settings: &Settings) -> Deployment {
    let labels = labels(instance, "inference");
    let container = Container {
        name: "inference".into(),
        command: Some(settings.inference_command.clone()),
        ..Default::default()
    };
    Deployment {
        metadata: meta(
            format!("hikube-gpu-inference-{}", instance.short()),
            settings,
            labels.clone(),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(gpu_pod(instance, settings, container, Vec::new(), "Always")),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespace(settings: &Settings) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".into(),
                "hikube-gpu".into(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// At most `gpu_quota` GPUs requested in the namespace at once (extended resources take only the
/// `requests.` form in a quota).
fn gpu_quota(settings: &Settings) -> ResourceQuota {
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some("hikube-gpu-gpus".into()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".into(),
                "hikube-gpu".into(),
            )])),
            ..Default::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(&[(
                &format!("requests.{GPU_RESOURCE}"),
                settings.gpu_quota.to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command that rewrites deploy/k8s.
    const REGENERATE: &str = "cargo run --bin hikube-gpu -- k8s --out deploy/k8s";

    fn all_files() -> Vec<(String, String)> {
        render(&instances().unwrap(), &Settings::default()).unwrap()
    }

    #[test]
    fn every_catalog_instance_type_once_in_catalog_order() {
        let names: Vec<_> = instances().unwrap().iter().map(|i| i.shape.name).collect();
        assert_eq!(
            names,
            [
                "gpu.tesla-v100",
                "gpu.tesla-t4",
                "gpu.rtx4090",
                "gpu.rtx3090",
                "gpu.rtx3080"
            ]
        );
        let v100 = instances().unwrap().remove(0);
        assert_eq!(v100.gpus.len(), 2, "{v100:?}");
        assert_eq!(v100.short(), "tesla-v100");
    }

    /// The committed manifests are what the generator writes, byte for byte, and nothing else.
    #[test]
    fn deploy_k8s_matches_the_generator() {
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
        // Through the same writer as the command, into a directory of this test's own.
        let dir = std::env::temp_dir().join(format!("hikube-gpu-k8s-test-{}", std::process::id()));
        let files = all_files();
        write_files(&dir, &files).unwrap();
        let mut stale = Vec::new();
        for (name, _) in &files {
            let fresh = std::fs::read(dir.join(name)).unwrap();
            if std::fs::read(committed.join(name)).ok() != Some(fresh) {
                stale.push(name.clone());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let mut extra: Vec<String> = std::fs::read_dir(&committed)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| !files.iter().any(|(f, _)| f == n))
                    .collect()
            })
            .unwrap_or_default();
        extra.sort();
        assert!(
            stale.is_empty() && extra.is_empty(),
            "deploy/k8s is out of date (differ or missing: {stale:?}; not generated: {extra:?}).\n\
             Regenerate with `{REGENERATE}` (and delete files not generated)."
        );
    }

    fn parse<T: serde::de::DeserializeOwned>(doc: &str) -> T {
        serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
    }

    /// Every pod: one GPU, the instance type's nodes, requests within the instance.
    fn check_pod(instance: &Instance, pod: &PodSpec) {
        let terms = &pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("required node affinity")
            .node_selector_terms;
        let req = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (
                req.key.as_str(),
                req.operator.as_str(),
                req.values.as_deref()
            ),
            (
                INSTANCE_TYPE_LABEL,
                "In",
                Some(&[instance.shape.name.to_string()][..])
            )
        );
        assert_eq!(pod.containers.len(), 1);
        let resources = pod.containers[0].resources.as_ref().unwrap();
        let limits = resources.limits.as_ref().unwrap();
        let requests = resources.requests.as_ref().unwrap();
        assert_eq!(limits[GPU_RESOURCE].0, "1");
        let cpu: u32 = requests["cpu"].0.parse().unwrap();
        let mem: u32 = requests["memory"].0.trim_end_matches('G').parse().unwrap();
        assert!(cpu >= 1 && cpu < instance.shape.vcpus, "{cpu}");
        assert!(mem >= 1 && mem < instance.shape.memory_gb, "{mem}");
        let yaml = serde_norway::to_string(pod).unwrap();
        assert!(!yaml.to_lowercase().contains("nccl"), "{yaml}");
    }

    #[test]
    fn manifests_parse_back_into_typed_objects() {
        let files = all_files();
        let instances = instances().unwrap();
        assert_eq!(files.len(), instances.len() + 1);
        for (instance, (name, text)) in instances.iter().zip(&files) {
            assert_eq!(name, &format!("{}.yaml", instance.shape.name));
            let docs: Vec<&str> = text.split("---\n").collect();
            assert_eq!(docs.len(), 3, "{text}");
            let pvc: PersistentVolumeClaim = parse(docs[0]);
            let job: Job = parse(docs[1]);
            let deployment: Deployment = parse(docs[2]);
            assert_eq!(pvc, reports_claim(instance, &Settings::default()));
            let pod = job.spec.unwrap().template.spec.unwrap();
            check_pod(instance, &pod);
            assert_eq!(
                pod.containers[0].command.as_ref().unwrap().join(" "),
                format!("hikube-gpu bench --out /reports/{}", instance.shape.name)
            );
            let claim = pod.volumes.as_ref().unwrap()[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap();
            assert_eq!(Some(&claim.claim_name), pvc.metadata.name.as_ref());
            let pod = deployment.spec.unwrap().template.spec.unwrap();
            check_pod(instance, &pod);
            let want: Vec<String> = DEFAULT_INFERENCE_COMMAND
                .split_whitespace()
                .map(Into::into)
                .collect();
            assert_eq!(pod.containers[0].command.as_deref(), Some(&want[..]));
            assert_eq!(pod.containers[0].image.as_deref(), Some(DEFAULT_IMAGE));
        }
        let (name, text) = files.last().unwrap();
        assert_eq!(name, "quota.yaml");
        let docs: Vec<&str> = text.split("---\n").collect();
        let _: Namespace = parse(docs[0]);
        let quota: ResourceQuota = parse(docs[1]);
        assert_eq!(
            quota.spec.unwrap().hard.unwrap()["requests.nvidia.com/gpu"].0,
            "4"
        );
        assert!(text.contains("kind: ResourceQuota") && text.contains("apiVersion: v1"));
        assert!(files[0].1.contains("apiVersion: batch/v1\nkind: Job"));
        assert!(files[0].1.contains("apiVersion: apps/v1\nkind: Deployment"));
    }

    #[test]
    fn options_reach_the_manifests() {
        let settings = Settings {
            image: "registry.example/hikube-gpu:dev".into(),
            namespace: "ml".into(),
            inference_command: vec!["hikube-gpu".into(), "info".into()],
            gpu_quota: 2,
        };
        let files = render(&instances().unwrap()[..1], &settings).unwrap();
        assert_eq!(files.len(), 2);
        let text = &files[0].1;
        assert!(
            text.contains("image: registry.example/hikube-gpu:dev"),
            "{text}"
        );
        assert!(text.contains("namespace: ml"), "{text}");
        assert!(text.contains("- hikube-gpu\n        - info\n"), "{text}");
        assert!(
            files[1].1.contains("requests.nvidia.com/gpu: '2'"),
            "{}",
            files[1].1
        );
    }
}
