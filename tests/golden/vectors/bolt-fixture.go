// Writes bolt-fixture.db and bolt-fixture.json with github.com/boltdb/bolt v1.3.1 (the library Weave Net 2.8
// vendors): buckets spanning branch pages, an overflowing value, inline and non-inline nested buckets, an
// empty bucket and a bucket sequence, over several transactions (so both meta pages are in use and pages
// are freed). The JSON lists what bolt itself reads back (keys and values in hex, by bucket path).
//
// Run (GOPATH mode, Debian's golang-go and golang-github-boltdb-bolt-dev):
//   GO111MODULE=off GOPATH=/usr/share/gocode go run bolt-fixture.go <outdir>
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/boltdb/bolt"
)

type bucketDump struct {
	Sequence uint64                 `json:"sequence"`
	Values   map[string]string      `json:"values_hex"`
	Buckets  map[string]*bucketDump `json:"buckets"`
}

func dump(b *bolt.Bucket) *bucketDump {
	d := &bucketDump{Sequence: b.Sequence(), Values: map[string]string{}, Buckets: map[string]*bucketDump{}}
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			d.Buckets[hex.EncodeToString(k)] = dump(b.Bucket(k))
		} else {
			d.Values[hex.EncodeToString(k)] = hex.EncodeToString(v)
		}
		return nil
	})
	return d
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	out := os.Args[1]
	path := filepath.Join(out, "bolt-fixture.db")
	_ = os.Remove(path)
	db, err := bolt.Open(path, 0600, nil)
	must(err)
	// 1: a bucket whose 400 keys need several leaf pages under a branch page
	must(db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("many"))
		if err != nil {
			return err
		}
		for i := 0; i < 160; i++ {
			v := bytes.Repeat([]byte(fmt.Sprintf("value-%04d;", i)), 2)
			if err := b.Put([]byte(fmt.Sprintf("key-%04d", i)), v); err != nil {
				return err
			}
		}
		return nil
	}))
	// 2: a value larger than a page (overflow pages), and a small one beside it
	must(db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		big := make([]byte, 10000)
		for i := range big {
			big[i] = byte(i * 7)
		}
		if err := b.Put([]byte("overflow"), big); err != nil {
			return err
		}
		return b.Put([]byte("small"), []byte("s"))
	}))
	// 3: nested buckets: an inline one, a non-inline one holding another level, an empty one; a sequence
	must(db.Update(func(tx *bolt.Tx) error {
		outer, err := tx.CreateBucket([]byte("outer"))
		if err != nil {
			return err
		}
		inner, err := outer.CreateBucket([]byte("inline"))
		if err != nil {
			return err
		}
		if err := inner.Put([]byte("a"), []byte("1")); err != nil {
			return err
		}
		deep, err := outer.CreateBucket([]byte("deep"))
		if err != nil {
			return err
		}
		for i := 0; i < 60; i++ {
			if err := deep.Put([]byte(fmt.Sprintf("d%02d", i)), bytes.Repeat([]byte{byte(i)}, 40)); err != nil {
				return err
			}
		}
		deeper, err := deep.CreateBucket([]byte("deeper"))
		if err != nil {
			return err
		}
		if err := deeper.Put([]byte("leaf"), []byte("bottom")); err != nil {
			return err
		}
		if _, err := outer.CreateBucket([]byte("empty")); err != nil {
			return err
		}
		if err := outer.Put([]byte("plain"), []byte{}); err != nil {
			return err
		}
		seq, err := tx.CreateBucket([]byte("seq"))
		if err != nil {
			return err
		}
		for i := 0; i < 5; i++ {
			if _, err := seq.NextSequence(); err != nil {
				return err
			}
		}
		return seq.Put([]byte("k"), []byte("v"))
	}))
	// 4: delete some keys and rewrite others, so pages are freed and the tree is rewritten
	must(db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("many"))
		for i := 0; i < 160; i += 3 {
			if err := b.Delete([]byte(fmt.Sprintf("key-%04d", i))); err != nil {
				return err
			}
		}
		return b.Put([]byte("key-0001"), []byte("rewritten"))
	}))
	var root *bucketDump
	must(db.View(func(tx *bolt.Tx) error {
		root = &bucketDump{Values: map[string]string{}, Buckets: map[string]*bucketDump{}}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			root.Buckets[hex.EncodeToString(name)] = dump(b)
			return nil
		})
	}))
	must(db.Close())
	j, err := json.MarshalIndent(map[string]interface{}{
		"about": "Written by github.com/boltdb/bolt v1.3.1 (Go 1.19) with bolt-fixture.go beside this file; " +
			"'root' is what bolt reads back: bucket names and keys in hex, values in hex, nested buckets under 'buckets'.",
		"file": "bolt-fixture.db",
		"root": root,
	}, "", " ")
	must(err)
	must(os.WriteFile(filepath.Join(out, "bolt-fixture.json"), append(j, '\n'), 0644))
}
