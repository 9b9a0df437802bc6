//! The committed deployment files, read as they are: every manifest under `deploy/k8s` parses as
//! a typed Kubernetes object, every pod passes the Pod Security Standards' `restricted` profile
//! (the fields it checks), serving pods have probes, one-GPU Deployments use `Recreate`, the GPU
//! quota covers what the workloads request, and the Dockerfile pins its bases. The full
//! validators (checkov, kubernetes-validate, yamllint, hadolint) run in `scripts/check-deploy`.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, Namespace, PersistentVolumeClaim, PodSpec, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::path::{Path, PathBuf};

const GPU: &str = "nvidia.com/gpu";

/// `deploy/` of the checkout: from the working directory first (the checkout's root where the
/// tests run on another machine), else beside Cargo.toml.
fn deploy_dir() -> PathBuf {
    let here = Path::new("deploy");
    if here.join("k8s").is_dir() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// Every object of deploy/k8s, typed, with the file it came from.
#[derive(Debug)]
enum Object {
    Namespace(Namespace),
    Quota(ResourceQuota),
    Policy(NetworkPolicy),
    Service(Service),
    Claim(PersistentVolumeClaim),
    Job(Job),
    Deployment(Deployment),
    DaemonSet(DaemonSet),
    /// A kustomization or a ServiceMonitor: no type in k8s-openapi.
    Other(String, serde_json::Value),
}

fn typed<T: serde::de::DeserializeOwned>(doc: &str, path: &Path) -> T {
    serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}\n{doc}", path.display()))
}

fn objects() -> Vec<(PathBuf, Object)> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir().join("k8s"), &mut files);
    files.sort();
    assert!(files.len() > 5, "{files:?}");
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in text.split("\n---\n").skip(1) {
            let value: serde_json::Value = typed(doc, &path);
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let object = match kind.as_str() {
                "Namespace" => Object::Namespace(typed(doc, &path)),
                "ResourceQuota" => Object::Quota(typed(doc, &path)),
                "NetworkPolicy" => Object::Policy(typed(doc, &path)),
                "Service" => Object::Service(typed(doc, &path)),
                "PersistentVolumeClaim" => Object::Claim(typed(doc, &path)),
                "Job" => Object::Job(typed(doc, &path)),
                "Deployment" => Object::Deployment(typed(doc, &path)),
                "DaemonSet" => Object::DaemonSet(typed(doc, &path)),
                "Kustomization" | "ServiceMonitor" => Object::Other(kind, value),
                other => panic!("{}: a {other} that this test does not know", path.display()),
            };
            out.push((path.clone(), object));
        }
    }
    out
}

fn gpus(c: &Container) -> u32 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(GPU))
        .map_or(0, |q| q.0.parse().unwrap())
}

/// The `restricted` profile: non-root, RuntimeDefault seccomp, no privilege escalation, every
/// capability dropped, only its volume types, no host namespaces; and no service account token.
fn check_restricted(what: &str, pod: &PodSpec) {
    let psc = pod.security_context.as_ref().expect(what);
    assert_eq!(psc.run_as_non_root, Some(true), "{what}");
    assert!(psc.run_as_user.is_some_and(|u| u > 0), "{what}");
    let seccomp = psc.seccomp_profile.as_ref().expect(what);
    assert_eq!(seccomp.type_, "RuntimeDefault", "{what}");
    assert_eq!(pod.automount_service_account_token, Some(false), "{what}");
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
    for v in pod.volumes.iter().flatten() {
        assert!(
            v.empty_dir.is_some() || v.persistent_volume_claim.is_some(),
            "{what}: volume {}",
            v.name
        );
    }
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().expect(what);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
        assert_ne!(sc.privileged, Some(true), "{what}");
        assert_ne!(sc.run_as_non_root, Some(false), "{what}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
        let caps = sc.capabilities.as_ref().expect(what);
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{what}"
        );
        assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()), "{what}");
        let image = c.image.as_deref().expect(what);
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{what}: {image}"
        );
    }
}

fn has_probes(c: &Container) -> bool {
    c.liveness_probe.is_some() && c.readiness_probe.is_some()
}

#[test]
fn every_manifest_parses_and_every_pod_is_restricted() {
    let objects = objects();
    let mut quota = None;
    let mut namespaces = 0;
    // Per overlay directory: the GPUs its workloads request at most at once.
    let mut requested = std::collections::BTreeMap::<PathBuf, u32>::new();
    let mut pods = 0;
    let mut deny_all = false;
    for (path, object) in &objects {
        let what = format!("{}", path.display());
        let overlay = path.parent().unwrap().to_path_buf();
        match object {
            Object::Namespace(ns) => {
                namespaces += 1;
                let labels = ns.metadata.labels.as_ref().unwrap();
                assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
            }
            Object::Quota(q) => {
                let hard = q.spec.as_ref().unwrap().hard.as_ref().unwrap();
                quota = Some(hard[&format!("requests.{GPU}")].0.parse::<u32>().unwrap());
            }
            Object::Job(job) => {
                let spec = job.spec.as_ref().unwrap();
                let pod = spec.template.spec.as_ref().unwrap();
                check_restricted(&what, pod);
                assert!(spec.parallelism.unwrap_or(1) == 1, "{what}");
                *requested.entry(overlay).or_default() +=
                    pod.containers.iter().map(gpus).sum::<u32>();
                pods += 1;
            }
            Object::Deployment(d) => {
                let spec = d.spec.as_ref().unwrap();
                let pod = spec.template.spec.as_ref().unwrap();
                check_restricted(&what, pod);
                assert!(pod.containers.iter().all(has_probes), "{what}: probes");
                let gpu: u32 = pod.containers.iter().map(gpus).sum();
                let replicas = spec.replicas.unwrap_or(1) as u32;
                if gpu > 0 && replicas == 1 {
                    let strategy = spec.strategy.as_ref().and_then(|s| s.type_.as_deref());
                    assert_eq!(strategy, Some("Recreate"), "{what}");
                }
                *requested.entry(overlay).or_default() += gpu * replicas;
                pods += 1;
            }
            Object::DaemonSet(ds) => {
                let spec = ds.spec.as_ref().unwrap();
                let pod = spec.template.spec.as_ref().unwrap();
                check_restricted(&what, pod);
                assert!(pod.containers.iter().all(has_probes), "{what}: probes");
                // One per node: a GPU request would take GPUs from the workloads.
                assert_eq!(pod.containers.iter().map(gpus).sum::<u32>(), 0, "{what}");
                let annotations = spec
                    .template
                    .metadata
                    .as_ref()
                    .unwrap()
                    .annotations
                    .as_ref();
                assert_eq!(
                    annotations.unwrap()["prometheus.io/scrape"],
                    "true",
                    "{what}"
                );
                pods += 1;
            }
            Object::Other(kind, value) if kind == "Kustomization" => {
                // Every resource it names exists beside it.
                for r in value["resources"].as_array().unwrap() {
                    let r = path.parent().unwrap().join(r.as_str().unwrap());
                    assert!(r.exists(), "{what}: {} is missing", r.display());
                }
            }
            Object::Policy(p) => {
                let spec = p.spec.as_ref().unwrap();
                let all_pods = spec
                    .pod_selector
                    .as_ref()
                    .is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none());
                let types = spec.policy_types.as_deref().unwrap_or_default();
                if all_pods && spec.ingress.is_none() && spec.egress.is_none() {
                    deny_all |= types.len() == 2;
                }
            }
            Object::Service(service) => {
                let spec = service.spec.as_ref().unwrap();
                assert!(spec.selector.is_some() && spec.ports.is_some(), "{what}");
            }
            Object::Claim(claim) => {
                let spec = claim.spec.as_ref().unwrap();
                assert!(
                    spec.resources.as_ref().unwrap().requests.is_some(),
                    "{what}"
                );
            }
            Object::Other(..) => {}
        }
    }
    assert_eq!(namespaces, 1);
    assert!(
        deny_all,
        "a NetworkPolicy that denies all traffic by default"
    );
    assert!(pods >= 3, "{pods} pods");
    let quota = quota.expect("a ResourceQuota on GPUs");
    let all: u32 = requested.values().sum();
    assert!(
        all > 0 && quota >= all,
        "quota {quota} < {all} GPUs requested by {requested:?}"
    );
}

#[test]
fn the_dockerfile_pins_its_bases_and_runs_as_a_user() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    for from in &froms {
        assert!(from.contains("@sha256:"), "not by digest: {from}");
    }
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let piped_into_a_shell = |l: &str| {
        let l = l.trim_end().trim_end_matches('\\').trim_end();
        ["| sh", "| bash"]
            .iter()
            .any(|p| l.ends_with(p) || l.contains(&format!("{p} ")))
    };
    assert!(
        !text.lines().any(piped_into_a_shell),
        "a script piped into a shell"
    );
    assert!(text.contains("sha256sum -c"), "rustup-init's checksum");
}
