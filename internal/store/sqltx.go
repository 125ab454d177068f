package store

import (
	"context"
	"errors"
)

// InTx runs fn on a sqlStore whose every statement goes through one
// transaction of the engine's.
func (s *sqlStore) InTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.e.inTx(ctx, func(q querier) error {
		return fn(&sqlStore{e: txEngine{querier: q, outer: s.e}})
	})
}

// txEngine is an engine inside a transaction: every statement, reads
// included (on SQLite they must not go to the read pool, which cannot see
// the transaction's writes), runs on the transaction's querier. A method
// that needs a transaction of its own joins the one running.
type txEngine struct {
	querier
	outer engine
}

func (e txEngine) inTx(_ context.Context, fn func(q querier) error) error { return fn(e.querier) }

func (e txEngine) isDuplicate(err error) bool { return e.outer.isDuplicate(err) }

func (e txEngine) close() error { return errors.New("close: a transaction's store is closed by InTx") }
