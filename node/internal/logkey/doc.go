// Package logkey holds the log keys every package of the node uses, so
// that every log line names things alike. It owns nothing else and
// imports nothing.
package logkey
