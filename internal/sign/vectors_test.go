package sign

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

type vectorFile struct {
	Binance struct {
		APIKey    string `json:"apiKey"`
		SecretKey string `json:"secretKey"`
		Cases     []struct {
			Name, Query, Body, Signature string
		} `json:"cases"`
	} `json:"binance_hmac_sha256"`
	RFC4231 struct {
		Cases []struct {
			KeyHex string `json:"key_hex"`
			Data   string `json:"data"`
			SHA256 string `json:"sha256"`
			SHA512 string `json:"sha512"`
		} `json:"cases"`
	} `json:"rfc4231_hmac"`
	RFC8032 struct {
		Cases []struct {
			Seed, Public, Signature string
			MessageHex              string `json:"message_hex"`
		} `json:"cases"`
	} `json:"rfc8032_ed25519"`
	RFC9421 struct {
		HMAC struct {
			KeyID           string `json:"keyid"`
			SecretBase64    string `json:"secret_base64"`
			SignatureBase   string `json:"signature_base"`
			SignatureHeader string `json:"signature_header"`
		} `json:"hmac_sha256"`
		Ed25519 struct {
			KeyID           string `json:"keyid"`
			PrivatePKCS8    string `json:"private_pkcs8_base64"`
			SignatureBase   string `json:"signature_base"`
			SignatureHeader string `json:"signature_header"`
		} `json:"ed25519"`
	} `json:"rfc9421_http_message_signatures"`
	AWS struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
		Region    string `json:"region"`
		Service   string `json:"service"`
		Time      string `json:"time"`
		Cases     []struct {
			Name, Method, URL, Signature string
		} `json:"cases"`
	} `json:"aws_sigv4"`
	Basic struct {
		ClientID      string `json:"client_id"`
		ClientSecret  string `json:"client_secret"`
		Authorization string `json:"authorization"`
	} `json:"oauth2_client_basic"`
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVectorsMatchShared checks that the copy in testdata equals the
// project's shared vectors for every key copied, when shared/ is present
// beside the repository (it is optional: CI may run without it).
func TestVectorsMatchShared(t *testing.T) {
	local := map[string]json.RawMessage{}
	raw, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &local); err != nil {
		t.Fatal(err)
	}
	sharedRaw, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "vectors", "vectors.json"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Log("shared vectors not present; using testdata copy only")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string]json.RawMessage{}
	if err := json.Unmarshal(sharedRaw, &shared); err != nil {
		t.Fatal(err)
	}
	for k, v := range local {
		if k == "_source" {
			continue
		}
		s, ok := shared[k]
		if !ok {
			t.Errorf("%s missing from shared vectors", k)
			continue
		}
		if !bytes.Equal(compact(t, v), compact(t, s)) {
			t.Errorf("%s differs from shared vectors", k)
		}
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
