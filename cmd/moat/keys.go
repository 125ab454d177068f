package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/auth/instancekey"
	"github.com/moat-dev/moat/internal/config"
	"github.com/moat-dev/moat/internal/fanout"
	"github.com/moat-dev/moat/internal/identity/assertion"
	"github.com/moat-dev/moat/internal/store"
)

func init() { subcommands = append(subcommands, newKeysCommand) }

func newKeysCommand() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make the instance key; manage the keys that sign X-Moat-Assertion (works while serve runs)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "moat.yaml", "configuration file")
	withStore := func(cmd *cobra.Command, fn func(ctx context.Context, st store.Store, cfg *config.Config) error) error {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		st, cfg, err := openStore(ctx, cfgPath)
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(ctx, st, cfg)
	}
	cmd.AddCommand(newKeysInitCommand())
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the signing keys, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st store.Store, _ *config.Config) error {
				keys, err := assertion.ListKeys(ctx, st)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KID\tALG\tCREATED\tSTATE")
				now := time.Now()
				for _, k := range keys {
					state := "signing"
					switch {
					case k.Signing(now) && !k.RetireAt.IsZero():
						state = "signing until " + k.RetireAt.Local().Format(time.RFC3339)
					case k.Signing(now):
					case now.Before(k.SignsFrom):
						state = "published, signing from " + k.SignsFrom.Local().Format(time.RFC3339)
					case k.Published:
						state = "retired " + k.RetireAt.Local().Format(time.RFC3339) + ", still published"
					default:
						state = "retired " + k.RetireAt.Local().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.CreatedAt.Local().Format(time.RFC3339), state)
				}
				return tw.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Add a new signing key, published at once, that signs after the JWKS cache lifetime has passed twice",
		Long: "rotate adds a new signing key: every instance publishes it in /_moat/jwks.json at once, and\n" +
			"assertions are signed with it only after twice identity.jwks_max_age (the JWKS's Cache-Control\n" +
			"max-age, 5m by default), so an app that caches the JWKS as told never meets an unknown kid.\n" +
			"The key it replaces signs until then and stays published until its last assertion expires.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(ctx context.Context, st store.Store, cfg *config.Config) error {
				ik, err := auth.InstanceKey(ctx, cfg, st)
				if err != nil {
					return err
				}
				kid, signsFrom, err := assertion.RotateKey(ctx, st, ik, cfg.Identity.JWKSMaxAge.D())
				if err != nil {
					return err
				}
				if err := st.Audit(ctx, &store.AuditEvent{Time: time.Now(), Actor: cliActor, Action: "keys.rotate", Detail: "new signing key " + kid}); err != nil {
					return fmt.Errorf("record audit event: %w", err)
				}
				// Every instance publishes the new key now, not at its
				// next key poll.
				tell, err := openAnnouncer(cfg, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				tell.publish(ctx, fanout.Event{Kind: fanout.KeysChanged})
				tell.close()
				fmt.Fprintf(cmd.OutOrStdout(), "new signing key %s: published in /_moat/jwks.json now, signing from %s; the previous key signs until then and stays published %s longer\n",
					kid, signsFrom.Local().Format(time.RFC3339), assertion.AssertionLifetime+time.Minute)
				return nil
			})
		},
	})
	return cmd
}

// newKeysInitCommand makes an instance key. It needs no configuration: the
// key is made before the first instance starts.
func newKeysInitCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a new instance key (MOAT_SECRET_KEY or secret_key_file)",
		Long: "init makes a new instance key: 32 random bytes in base64, which seal the secrets moat keeps\n" +
			"in its store. Without --file it prints the key (for MOAT_SECRET_KEY or a secret manager); with\n" +
			"--file it writes the file (mode 0600) that secret_key_file names, and refuses to replace one.\n" +
			"Every instance sharing a store needs the same key: make it once.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				if err := instancekey.WriteFile(file); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote a new instance key to %s; set secret_key_file: %s on every instance sharing the store\n", file, file)
				return nil
			}
			key, err := instancekey.Generate()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			fmt.Fprintf(cmd.ErrOrStderr(), "give this key to every instance sharing the store as %s (or in the file secret_key_file names); keep it secret\n", instancekey.EnvVar)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "write the key to this file instead of printing it")
	return cmd
}
