//! The manifests as Kubernetes would receive them: rendered by the real kustomize
//! (`kubectl kustomize DIR`, what `kubectl apply -k` runs), parsed into YAML documents.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

/// The documents `kubectl kustomize dir` prints. Panics naming the directory if kubectl is
/// missing or kustomize rejects the directory.
pub fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl kustomize {}: {e} (kubectl is needed to render the manifests, as in \
                 scripts/validate-k8s.sh)",
                dir.display()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("parsing kubectl kustomize {}: {e}", dir.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}
