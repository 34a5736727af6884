package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newRedisClient connects to addr: host:port, or a unix socket path.
// poolSize 0 keeps go-redis's default.
func newRedisClient(addr string, poolSize int) *redis.Client {
	opt := &redis.Options{Addr: addr, PoolSize: poolSize}
	if strings.HasPrefix(addr, "/") {
		opt.Network = "unix"
	}
	return redis.NewClient(opt)
}

// redisServer is a redis-server process this program started.
type redisServer struct {
	Addr   string
	cmd    *exec.Cmd
	dir    string
	exited chan error
}

// startRedis starts redis-server on a free loopback port with persistence
// off, in a temporary directory, and waits until it answers PING.
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %w (pass -redis ADDR to use a running one)", err)
	}
	dir, err := os.MkdirTemp("", "pbench")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := runRedis(bin, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// freePort asks the kernel for a free loopback port. redis-server cannot
// inherit a listener, so the port is closed before it binds it: another
// process may take it in between, and runRedis is retried.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runRedis(bin, dir string, port int) (*redisServer, error) {
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", fmt.Sprint(port),
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning",
		"--maxclients", "10000",
	)
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	rdb := newRedisClient(addr, 1)
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("redis-server on port %d exited: %v: %s", port, err, tail(logf.Name()))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return &redisServer{Addr: addr, cmd: cmd, dir: dir, exited: exited}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return nil, errors.New("redis-server did not answer PING within 10s")
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = append(last, sc.Text())
		if len(last) > 5 {
			last = last[1:]
		}
	}
	return strings.Join(last, "\n")
}

// Stop kills the server and removes its directory.
func (s *redisServer) Stop() {
	if s == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	os.RemoveAll(s.dir)
}

// redisVersion returns the server's redis_version.
func redisVersion(addr string) string {
	rdb := newRedisClient(addr, 1)
	defer rdb.Close()
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

// redisUsedMemory returns INFO memory's used_memory in bytes.
func redisUsedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, errors.New("no used_memory in INFO")
}

// redisCPU returns the server's CPU time, used_cpu_sys + used_cpu_user of
// INFO cpu, in µs.
func redisCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				var s float64
				if _, err := fmt.Sscan(v, &s); err != nil {
					return 0, err
				}
				total += s * 1e6
				found++
			}
		}
	}
	if found != 2 {
		return 0, errors.New("no used_cpu_sys and used_cpu_user in INFO")
	}
	return total, nil
}
