#!/usr/bin/env python3
"""Render a kustomization the way `kubectl kustomize` does, for the subset spacefabric uses.

CI machines have no kubectl, so scripts/validate-k8s.sh renders deploy/k8s with this script
and validates the result. Supported kustomization keys (anything else is an error, so a new
feature in the manifests cannot be silently ignored):

  resources            files (multi-document YAML) and directories holding a kustomization
  patches              strategic-merge patches, from `path:` or inline `patch:`, matched on
                       apiVersion/kind/metadata.name (no `target:`, no JSON 6902)
  configMapGenerator   `name` + `files` (key = file name, or `key=path`), behaviour create
  generatorOptions     `disableNameSuffixHash: true` (required) and `labels`
  images               `name` + `newName` / `newTag` / `digest`

Strategic merge follows Kubernetes' patch merge keys for the lists these manifests patch:
containers/initContainers/env/volumes/imagePullSecrets by `name`, volumeMounts by `mountPath`,
container ports by `containerPort`, service ports by `port`; other lists are replaced, and a
null value deletes a key.

  python3 scripts/k8s_render.py DIR                 print the rendered manifests
  python3 scripts/k8s_render.py DIR -o FILE         write them to FILE
  python3 scripts/k8s_render.py DIR --same-as FILE  exit 1 unless FILE (e.g. the output of
                                                    `kubectl kustomize DIR`) holds the same objects
"""

import argparse
import copy
import os
import re
import sys

import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "configMapGenerator",
    "generatorOptions",
    "images",
}
# field name -> merge key, for lists merged element-wise by strategic merge patch
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
}


class RenderError(Exception):
    """A kustomization this renderer cannot render; the message names the file and key."""


def load_yaml_docs(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise RenderError(f"{path}: {e}") from e


def find_kustomization(directory):
    for name in KUSTOMIZATION_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise RenderError(f"{directory}: no kustomization.yaml")


def inside(root, path):
    """kustomize refuses files outside the kustomization's own directory tree."""
    root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def object_id(obj, where):
    try:
        return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
    except (KeyError, TypeError) as e:
        raise RenderError(f"{where}: object without apiVersion/kind/metadata.name") from e


def merge_key_for(field, base_list, patch_list):
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports":
        items = [i for i in base_list + patch_list if isinstance(i, dict)]
        if items and all("containerPort" in i for i in items):
            return "containerPort"
        if items and all("port" in i for i in items):
            return "port"
    return None


def strategic_merge(base, patch, where):
    """Merge `patch` into `base` (both already parsed YAML); returns the merged value."""
    if isinstance(patch, dict):
        if any(isinstance(k, str) and k.startswith("$") for k in patch):
            raise RenderError(f"{where}: patch directives ($patch, $retainKeys, ...) unsupported")
        if not isinstance(base, dict):
            return {k: v for k, v in patch.items() if v is not None}
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out and isinstance(value, list) and isinstance(out[key], list):
                out[key] = merge_list(key, out[key], value, f"{where}.{key}")
            elif key in out:
                out[key] = strategic_merge(out[key], value, f"{where}.{key}")
            else:
                out[key] = value
        return out
    return patch


def merge_list(field, base_list, patch_list, where):
    key = merge_key_for(field, base_list, patch_list)
    if key is None:
        return patch_list
    # Same order as kustomize: the patch's elements first, in patch order (merged into the
    # base element with the same key), then the base elements the patch does not name.
    # Note for env: Kubernetes expands $(VAR) only from variables listed earlier, so
    # scripts/validate-k8s.sh checks the order of the rendered result.
    merged = []
    for item in patch_list:
        if not isinstance(item, dict) or key not in item:
            raise RenderError(f"{where}: list element without merge key {key!r}")
        base_item = next(
            (b for b in base_list if isinstance(b, dict) and b.get(key) == item[key]), None
        )
        if base_item is None:
            merged.append(strategic_merge(None, item, f"{where}[{key}={item[key]}]"))
        else:
            merged.append(strategic_merge(base_item, item, f"{where}[{key}={item[key]}]"))
    named = {item[key] for item in patch_list}
    rest = [b for b in base_list if not (isinstance(b, dict) and b.get(key) in named)]
    return merged + rest


def generate_configmaps(directory, kfile, generators, options):
    if not options.get("disableNameSuffixHash", False):
        raise RenderError(
            f"{kfile}: generatorOptions.disableNameSuffixHash must be true "
            "(name hash suffixes are not supported by this renderer)"
        )
    unknown_options = set(options) - {"disableNameSuffixHash", "labels"}
    if unknown_options:
        raise RenderError(f"{kfile}: generatorOptions: unsupported {sorted(unknown_options)}")
    out = []
    for gen in generators:
        unknown = set(gen) - {"name", "files"}
        if unknown:
            raise RenderError(f"{kfile}: configMapGenerator: unsupported {sorted(unknown)}")
        data = {}
        for entry in gen.get("files", []):
            key, _, rel = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
            path = os.path.join(directory, rel)
            if not inside(directory, path):
                raise RenderError(f"{kfile}: configMapGenerator file {rel!r} is outside {directory}")
            try:
                with open(path, encoding="utf-8") as f:
                    data[key] = f.read()
            except OSError as e:
                raise RenderError(f"{kfile}: configMapGenerator file {rel!r}: {e}") from e
        metadata = {"name": gen["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return out


def apply_images(objects, images, kfile):
    for image in images:
        unknown = set(image) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"{kfile}: images: unsupported {sorted(unknown)}")
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for field in ("containers", "initContainers"):
            for container in pod.get(field, []) or []:
                ref = container.get("image", "")
                name, tag = split_image(ref)
                for image in images:
                    if name != image["name"]:
                        continue
                    new_name = image.get("newName", name)
                    if "digest" in image:
                        container["image"] = f"{new_name}@{image['digest']}"
                    elif "newTag" in image:
                        container["image"] = f"{new_name}:{image['newTag']}"
                    else:
                        container["image"] = new_name + tag
    return objects


def split_image(ref):
    """'registry:5000/a/b:tag' -> ('registry:5000/a/b', ':tag'); digests kept in the suffix."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, "@" + digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon:]
    return ref, ""


def render(directory, seen=None):
    seen = set() if seen is None else seen
    real = os.path.realpath(directory)
    if real in seen:
        raise RenderError(f"{directory}: kustomization cycle")
    seen = seen | {real}
    kfile = find_kustomization(directory)
    docs = load_yaml_docs(kfile)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{kfile}: expected one YAML mapping")
    k = docs[0]
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomization keys {sorted(unknown)}")

    objects = []
    for res in k.get("resources", []) or []:
        path = os.path.join(directory, res)
        if os.path.isdir(path):
            objects.extend(render(path, seen))
        elif os.path.isfile(path):
            if not inside(directory, path):
                raise RenderError(f"{kfile}: resource {res!r} is outside {directory}")
            objects.extend(load_yaml_docs(path))
        else:
            raise RenderError(f"{kfile}: resource {res!r} not found")
    objects.extend(
        generate_configmaps(
            directory, kfile, k.get("configMapGenerator", []) or [], k.get("generatorOptions", {}) or {}
        )
        if k.get("configMapGenerator")
        else []
    )

    ids = {}
    for obj in objects:
        oid = object_id(obj, kfile)
        if oid in ids:
            raise RenderError(f"{kfile}: {oid[1]}/{oid[2]} defined twice")
        ids[oid] = obj

    for i, entry in enumerate(k.get("patches", []) or []):
        unknown = set(entry) - {"path", "patch"}
        if unknown:
            raise RenderError(f"{kfile}: patches[{i}]: unsupported {sorted(unknown)}")
        if "path" in entry:
            where = os.path.join(directory, entry["path"])
            if not inside(directory, where):
                raise RenderError(f"{kfile}: patch {entry['path']!r} is outside {directory}")
            patch_docs = load_yaml_docs(where)
        elif "patch" in entry:
            where = f"{kfile}: patches[{i}]"
            try:
                patch_docs = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
            except yaml.YAMLError as e:
                raise RenderError(f"{where}: {e}") from e
        else:
            raise RenderError(f"{kfile}: patches[{i}] has neither path nor patch")
        for patch in patch_docs:
            pid = object_id(patch, where)
            if pid not in ids:
                raise RenderError(f"{where}: patch target {pid[1]}/{pid[2]} not found")
            merged = strategic_merge(ids[pid], patch, f"{where}: {pid[1]}/{pid[2]}")
            objects[objects.index(ids[pid])] = merged
            ids[pid] = merged

    if k.get("images"):
        objects = apply_images(objects, k["images"], kfile)
    return objects


ENV_REFERENCE = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def check_env_references(objects, where):
    """Kubernetes expands $(VAR) in an env value only from variables listed *before* it in the
    same container (otherwise the literal text stays): reject a reference to a later or an
    unknown variable, such as a patch that moved SPACEFABRIC_ADVERTISE above POD_IP."""
    for obj in objects:
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for field in ("containers", "initContainers"):
            for container in pod.get(field, []) or []:
                defined = set()
                for env in container.get("env", []) or []:
                    for ref in ENV_REFERENCE.findall(str(env.get("value", ""))):
                        if ref not in defined:
                            raise RenderError(
                                f"{where}: {obj['kind']}/{obj['metadata']['name']} container "
                                f"{container.get('name')}: env {env.get('name')} refers to "
                                f"$({ref}), which is not defined above it"
                            )
                    defined.add(env.get("name"))


def canonical(objects):
    """Objects keyed by (apiVersion, kind, name), order-free, for comparing two renderings."""
    return {object_id(o, "rendering"): o for o in objects}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("-o", "--output")
    parser.add_argument("--same-as", metavar="FILE")
    args = parser.parse_args()
    try:
        objects = render(args.directory)
        check_env_references(objects, args.directory)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.same_as:
        try:
            theirs = canonical(load_yaml_docs(args.same_as))
        except RenderError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        ours = canonical(copy.deepcopy(objects))
        if ours == theirs:
            return 0
        for oid in sorted(set(ours) | set(theirs)):
            if ours.get(oid) != theirs.get(oid):
                print(
                    f"differs from {args.same_as}: {oid[1]}/{oid[2]}\n"
                    f"  ours:   {yaml.safe_dump(ours.get(oid), sort_keys=True)}\n"
                    f"  theirs: {yaml.safe_dump(theirs.get(oid), sort_keys=True)}",
                    file=sys.stderr,
                )
        return 1
    text = yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
