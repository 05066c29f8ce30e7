package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stevedore-dev/stevedore/api/v1alpha1"
)

// configError is a problem the user has to fix in the spec or in a referenced
// Secret; retrying does not help until something changes (which the watches see).
type configError struct {
	reason string
	msg    string
}

func (e *configError) Error() string { return e.msg }

// objstoreConfig is a Bucket rendered into Thanos's objstore YAML.
type objstoreConfig struct {
	Type       v1alpha1.BucketType
	BucketName string
	YAML       []byte
}

// objstoreDoc is the objstore configuration format of thanos-io/objstore.
type objstoreDoc struct {
	Type   string         `json:"type"`
	Config map[string]any `json:"config"`
	Prefix string         `json:"prefix,omitempty"`
}

// renderObjstore renders b into an objstore configuration, reading the
// credentials from the Secrets it references.
func renderObjstore(ctx context.Context, c client.Reader, b *v1alpha1.Bucket) (*objstoreConfig, error) {
	s := &b.Spec
	sec := secretReader{ctx: ctx, c: c, namespace: b.Namespace}
	if s.ConfigSecret != nil {
		return renderFromSecret(&sec, b)
	}
	cfg := map[string]any{}
	put := func(k string, v any) {
		switch t := v.(type) {
		case string:
			if t == "" {
				return
			}
		case bool:
			if !t {
				return
			}
		}
		cfg[k] = v
	}
	var name string
	switch s.Type {
	case v1alpha1.BucketS3:
		p := s.S3
		name = p.Bucket
		put("bucket", p.Bucket)
		put("endpoint", p.Endpoint)
		put("region", p.Region)
		put("insecure", p.Insecure)
		if cr := p.Credentials; cr != nil {
			ak, err := sec.get(cr.SecretName, defaultString(cr.AccessKeyKey, "access_key"))
			if err != nil {
				return nil, err
			}
			sk, err := sec.get(cr.SecretName, defaultString(cr.SecretKeyKey, "secret_key"))
			if err != nil {
				return nil, err
			}
			put("access_key", strings.TrimSpace(ak))
			put("secret_key", strings.TrimSpace(sk))
		}
	case v1alpha1.BucketGCS:
		p := s.GCS
		name = p.Bucket
		put("bucket", p.Bucket)
		if p.ServiceAccount != nil {
			v, err := sec.get(p.ServiceAccount.Name, p.ServiceAccount.Key)
			if err != nil {
				return nil, err
			}
			put("service_account", v)
		}
	case v1alpha1.BucketAzure:
		p := s.Azure
		name = p.Container
		put("storage_account", p.StorageAccount)
		put("container", p.Container)
		put("endpoint", p.Endpoint)
		if p.StorageAccountKey != nil {
			v, err := sec.get(p.StorageAccountKey.Name, p.StorageAccountKey.Key)
			if err != nil {
				return nil, err
			}
			put("storage_account_key", strings.TrimSpace(v))
		}
	case v1alpha1.BucketSwift:
		p := s.Swift
		name = p.ContainerName
		put("auth_url", p.AuthURL)
		put("container_name", p.ContainerName)
		put("username", p.Username)
		put("project_name", p.ProjectName)
		put("region_name", p.RegionName)
		put("user_domain_name", p.UserDomainName)
		put("project_domain_name", p.ProjectDomainName)
		if p.Password != nil {
			v, err := sec.get(p.Password.Name, p.Password.Key)
			if err != nil {
				return nil, err
			}
			put("password", strings.TrimSpace(v))
		}
	case v1alpha1.BucketCOS:
		p := s.COS
		name = p.Bucket
		put("bucket", p.Bucket)
		put("region", p.Region)
		put("app_id", p.AppID)
		put("endpoint", p.Endpoint)
		if cr := p.Credentials; cr != nil {
			id, key, err := sec.pair(cr)
			if err != nil {
				return nil, err
			}
			put("secret_id", id)
			put("secret_key", key)
		}
	case v1alpha1.BucketOSS:
		p := s.OSS
		name = p.Bucket
		put("bucket", p.Bucket)
		put("endpoint", p.Endpoint)
		if cr := p.Credentials; cr != nil {
			id, key, err := sec.pair(cr)
			if err != nil {
				return nil, err
			}
			put("access_key_id", id)
			put("access_key_secret", key)
		}
	case v1alpha1.BucketFilesystem:
		name = s.Filesystem.Directory
		put("directory", s.Filesystem.Directory)
	default:
		// The CRD rejects this; an old object stored before a schema change may not.
		return nil, &configError{ReasonInvalidConfig, fmt.Sprintf("unsupported bucket type %q", s.Type)}
	}
	out, err := yaml.Marshal(objstoreDoc{Type: objstoreType(s.Type), Config: cfg, Prefix: s.Prefix})
	if err != nil {
		return nil, fmt.Errorf("marshal objstore config: %w", err)
	}
	return &objstoreConfig{Type: s.Type, BucketName: name, YAML: out}, nil
}

// objstoreType is the name thanos-io/objstore gives a provider.
func objstoreType(t v1alpha1.BucketType) string {
	if t == v1alpha1.BucketOSS {
		return "ALIYUNOSS"
	}
	return string(t)
}

// renderFromSecret takes a user's complete objstore YAML, checks its shape and
// applies the Bucket's prefix.
func renderFromSecret(sec *secretReader, b *v1alpha1.Bucket) (*objstoreConfig, error) {
	ref := b.Spec.ConfigSecret
	raw, err := sec.get(ref.Name, ref.Key)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, &configError{ReasonInvalidConfig, fmt.Sprintf("Secret %s key %s is not valid objstore YAML: %v", ref.Name, ref.Key, err)}
	}
	t, _ := doc["type"].(string)
	typ := v1alpha1.BucketType(strings.ToUpper(t))
	switch typ {
	case v1alpha1.BucketS3, v1alpha1.BucketGCS, v1alpha1.BucketAzure, v1alpha1.BucketSwift,
		v1alpha1.BucketCOS, v1alpha1.BucketOSS, v1alpha1.BucketFilesystem:
	case "ALIYUNOSS":
		typ = v1alpha1.BucketOSS
	default:
		return nil, &configError{ReasonInvalidConfig, fmt.Sprintf("Secret %s key %s: type %q is not one of S3, GCS, AZURE, SWIFT, COS, ALIYUNOSS, FILESYSTEM", ref.Name, ref.Key, t)}
	}
	cfg, _ := doc["config"].(map[string]any)
	if cfg == nil {
		return nil, &configError{ReasonInvalidConfig, fmt.Sprintf("Secret %s key %s has no config section", ref.Name, ref.Key)}
	}
	if b.Spec.Prefix != "" {
		doc["prefix"] = b.Spec.Prefix
	}
	var name string
	for _, k := range []string{"bucket", "container", "container_name", "directory"} {
		if v, ok := cfg[k].(string); ok && v != "" {
			name = v
			break
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal objstore config: %w", err)
	}
	return &objstoreConfig{Type: typ, BucketName: name, YAML: out}, nil
}

// secretReader reads keys of Secrets in one namespace.
type secretReader struct {
	ctx       context.Context
	c         client.Reader
	namespace string
}

func (r *secretReader) get(name, key string) (string, error) {
	var s corev1.Secret
	if err := r.c.Get(r.ctx, client.ObjectKey{Namespace: r.namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &configError{ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s not found", r.namespace, name)}
		}
		return "", fmt.Errorf("get Secret %s: %w", name, err)
	}
	v, ok := s.Data[key]
	if !ok {
		return "", &configError{ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s has no key %q", r.namespace, name, key)}
	}
	return string(v), nil
}

func (r *secretReader) pair(cr *v1alpha1.KeyPairCredentials) (string, string, error) {
	id, err := r.get(cr.SecretName, defaultString(cr.IDKey, "id"))
	if err != nil {
		return "", "", err
	}
	key, err := r.get(cr.SecretName, defaultString(cr.SecretKey, "secret"))
	if err != nil {
		return "", "", err
	}
	return strings.TrimSpace(id), strings.TrimSpace(key), nil
}

// bucketSecretNames lists the Secrets a Bucket reads, for the watch index.
func bucketSecretNames(b *v1alpha1.Bucket) []string {
	s := &b.Spec
	var names []string
	add := func(n string) {
		if n != "" {
			names = append(names, n)
		}
	}
	if s.ConfigSecret != nil {
		add(s.ConfigSecret.Name)
	}
	if s.S3 != nil && s.S3.Credentials != nil {
		add(s.S3.Credentials.SecretName)
	}
	if s.GCS != nil && s.GCS.ServiceAccount != nil {
		add(s.GCS.ServiceAccount.Name)
	}
	if s.Azure != nil && s.Azure.StorageAccountKey != nil {
		add(s.Azure.StorageAccountKey.Name)
	}
	if s.Swift != nil && s.Swift.Password != nil {
		add(s.Swift.Password.Name)
	}
	if s.COS != nil && s.COS.Credentials != nil {
		add(s.COS.Credentials.SecretName)
	}
	if s.OSS != nil && s.OSS.Credentials != nil {
		add(s.OSS.Credentials.SecretName)
	}
	return names
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
