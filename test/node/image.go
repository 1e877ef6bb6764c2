package node

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Image describes a one-layer image of static binaries.
type Image struct {
	// Name is the image's reference, such as lifelock-example:latest; a name without a registry is stored
	// as docker.io/library/<name>, the way the CRI and docker resolve it.
	Name string
	// Files maps a path in the image (without the leading slash) to the file on this machine to put there,
	// executable.
	Files map[string]string
	// Entrypoint is the command the image runs.
	Entrypoint []string
	// User is the user the image runs as ("65532:65532"); empty for root.
	User string
	// StopSignal is the signal a container runtime sends to stop the container (SIGTERM if empty).
	StopSignal string
}

// WriteImage writes an OCI image layout, as a tar archive at out, of one image named name whose only layer
// holds binary as /pause and whose entrypoint runs it. containerd's importer (ctr images import) names the
// image from the io.containerd.image.name annotation.
func WriteImage(out, binary, name string) error {
	return WriteImageOf(out, Image{Name: name, Files: map[string]string{"pause": binary}, Entrypoint: []string{"/pause"}})
}

// FullName is the name an image reference resolves to: docker.io/library/ prepended to a name without a
// registry (nginx:1), docker.io/ to one whose first element is not a host (library/nginx:1).
func FullName(name string) string {
	first, _, found := strings.Cut(name, "/")
	switch {
	case !found:
		return "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		return "docker.io/" + name
	}
	return name
}

// WriteImageOf writes img as a tar archive at out that is both an OCI image layout (index.json, for
// containerd's `ctr images import`, `kind load image-archive` and docker 25 or later) and a docker archive
// (manifest.json, for older `docker load`); both name the same config and layer blobs.
func WriteImageOf(out string, img Image) error {
	epoch := time.Unix(0, 0)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	paths := make([]string, 0, len(img.Files))
	for p := range img.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(img.Files[p])
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}

	blobs := map[string][]byte{}
	descriptor := func(mediaType string, b []byte) map[string]any {
		sum := sha256.Sum256(b)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		blobs[digest] = b
		return map[string]any{"mediaType": mediaType, "digest": digest, "size": len(b)}
	}
	blobPath := func(desc map[string]any) string {
		return "blobs/sha256/" + strings.TrimPrefix(desc["digest"].(string), "sha256:")
	}
	layerDesc := descriptor("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	runConfig := map[string]any{"Entrypoint": img.Entrypoint}
	if img.User != "" {
		runConfig["User"] = img.User
	}
	if img.StopSignal != "" {
		runConfig["StopSignal"] = img.StopSignal
	}
	config, err := json.Marshal(map[string]any{
		"created":      epoch.UTC().Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       runConfig,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDesc["digest"].(string)}},
	})
	if err != nil {
		return err
	}
	configDesc := descriptor("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []any{layerDesc},
	})
	if err != nil {
		return err
	}
	full := FullName(img.Name)
	manifestDesc := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	annotations := map[string]string{"io.containerd.image.name": full}
	if i := strings.LastIndex(full, ":"); i > strings.LastIndex(full, "/") {
		annotations["org.opencontainers.image.ref.name"] = full[i+1:]
	}
	manifestDesc["annotations"] = annotations
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{manifestDesc},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   blobPath(configDesc),
		"RepoTags": []string{img.Name},
		"Layers":   []string{blobPath(layerDesc)},
	}})
	if err != nil {
		return err
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw = tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	err = add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = add("index.json", index)
	}
	if err == nil {
		err = add("manifest.json", dockerManifest)
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, digest := range digests {
		if err != nil {
			break
		}
		err = add("blobs/sha256/"+strings.TrimPrefix(digest, "sha256:"), blobs[digest])
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing image %s: %w", out, err)
	}
	return nil
}
