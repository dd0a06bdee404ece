// Package binance tests github.com/adshao/go-binance/v2, unmodified,
// through keystile's forward proxy against the sandbox.
package binance
