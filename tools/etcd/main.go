// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 at the version
// pinned in go.mod. The upstream root module (go.etcd.io/etcd/v3) carries replace
// directives and cannot be installed directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
