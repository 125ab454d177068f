package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/auth/password"
	"github.com/moat-dev/moat/internal/directory"
	"github.com/moat-dev/moat/internal/firebaseexport"
	"github.com/moat-dev/moat/internal/store"
)

// importCommand is `moat users import FILE --format firebase …`: the
// accounts of a Firebase / Identity Platform project, with their passwords.
func (c *usersCLI) importCommand() *cobra.Command {
	var format, hashKey, hashKeyFile, saltSep string
	var rounds, memCost int
	var groups []string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Create users from a `firebase auth:export` JSON file; they keep their passwords",
		Long: "Create a user for every account with an email and a password in FILE, the JSON that\n" +
			"`firebase auth:export FILE --format=json` writes for a Firebase or Identity Platform project.\n" +
			"The hash parameters are the project's (Firebase console: Authentication → Users →\n" +
			"⋮ → Password hash parameters). Each user keeps their password: moat checks it in\n" +
			"Firebase's form at the next sign-in and stores it as argon2id from then on.\n" +
			"Disabled accounts stay disabled; existing users are left alone.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "firebase" {
				return fmt.Errorf("--format %q: the one format moat imports is firebase", format)
			}
			p, err := firebaseParams(hashKey, hashKeyFile, saltSep, rounds, memCost)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			accounts, skipped, err := firebaseexport.Read(f, p)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return c.run(cmd, func(ctx context.Context) error {
				return c.importAccounts(ctx, accounts, skipped, groups)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format of FILE: firebase")
	cmd.Flags().StringVar(&hashKey, "hash-key", "", "the project's base64_signer_key (base64)")
	cmd.Flags().StringVar(&hashKeyFile, "hash-key-file", "", "a file holding the base64_signer_key, to keep it out of the process list")
	cmd.Flags().StringVar(&saltSep, "salt-separator", "", "the project's base64_salt_separator (base64)")
	cmd.Flags().IntVar(&rounds, "rounds", 0, "the project's rounds")
	cmd.Flags().IntVar(&memCost, "mem-cost", 0, "the project's mem_cost")
	cmd.Flags().StringArrayVar(&groups, "group", nil, "group to add every imported user to (repeatable), such as the group a route allows")
	_ = cmd.MarkFlagRequired("format")
	_ = cmd.MarkFlagRequired("salt-separator")
	_ = cmd.MarkFlagRequired("rounds")
	_ = cmd.MarkFlagRequired("mem-cost")
	return cmd
}

// firebaseParams decodes the project's hash parameters from the flags.
func firebaseParams(hashKey, hashKeyFile, saltSep string, rounds, memCost int) (password.FirebaseParams, error) {
	var p password.FirebaseParams
	switch {
	case hashKey != "" && hashKeyFile != "":
		return p, errors.New("give --hash-key or --hash-key-file, not both")
	case hashKeyFile != "":
		b, err := os.ReadFile(hashKeyFile)
		if err != nil {
			return p, fmt.Errorf("--hash-key-file: %w", err)
		}
		hashKey = string(b)
	case hashKey == "":
		return p, errors.New("--hash-key (or --hash-key-file) is required: the project's base64_signer_key from the Firebase console")
	}
	key, err := firebaseexport.DecodeKey("--hash-key", hashKey)
	if err != nil {
		return p, err
	}
	sep, err := firebaseexport.DecodeKey("--salt-separator", saltSep)
	if err != nil {
		return p, err
	}
	p = password.FirebaseParams{SignerKey: key, SaltSeparator: sep, Rounds: rounds, MemCost: memCost}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("hash parameters: %w (copy them from the Firebase console)", err)
	}
	return p, nil
}

// importAccounts creates a user for each account, as `moat users add` does,
// and prints what it did with every account of the file.
func (c *usersCLI) importAccounts(ctx context.Context, accounts []firebaseexport.Account, skipped []firebaseexport.Skipped, groups []string) error {
	for _, s := range skipped {
		fmt.Fprintf(c.out, "skipped users[%d] %s: %s\n", s.Index, orDash(strings.TrimSpace(s.Email+" "+s.LocalID)), s.Reason)
	}
	created, existing := 0, 0
	for _, a := range accounts {
		_, err := c.dir.ImportUser(ctx, cli, directory.ImportedUser{Email: a.Email, Name: strings.TrimSpace(a.Name), Groups: groups,
			PasswordHash: a.PasswordHash, Disabled: a.Disabled, From: "firebase uid " + a.LocalID})
		var refused *directory.Refusal
		switch {
		case errors.As(err, &refused) && refused.Kind == directory.Conflict:
			existing++
			fmt.Fprintf(c.out, "skipped %s: already a user (left as it is)\n", store.NormalizeEmail(a.Email))
			continue
		case errors.As(err, &refused):
			fmt.Fprintf(c.out, "skipped %s: %s\n", a.LocalID, refused.Msg)
			continue
		case err != nil:
			return fmt.Errorf("create user %s: %w", store.NormalizeEmail(a.Email), err)
		}
		created++
	}
	fmt.Fprintf(c.out, "imported %d user(s); %d already existed; %d skipped\n", created, existing, len(skipped)+len(accounts)-created-existing)
	if created > 0 {
		fmt.Fprintln(c.out, "they sign in with their Firebase passwords, which moat rehashes to argon2id at each one's first sign-in")
	}
	return nil
}
